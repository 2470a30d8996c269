"""netclass: /sys/class/net/<iface> attributes, as node_exporter's netclass collector (sysfs).

Every attribute file is read with the ``read`` builtin (no process); files the kernel refuses
(``speed`` of a link that is down: EINVAL) yield no sample, as in node_exporter.

Example result for ``eth0``::

    node_network_up{device="eth0"} 1
    node_network_info{address="52:54:00:12:34:56",adminstate="up",broadcast="ff:ff:ff:ff:ff:ff",\
device="eth0",duplex="full",ifalias="",operstate="up"} 1
    node_network_mtu_bytes{device="eth0"} 1500
    node_network_speed_bytes{device="eth0"} 125000000
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from collectors.base import Collector, DeviceFilter, Option, Options, Samples, parse_number
from collectors.sample import Sample

# attribute file -> metric suffix (None: a string used in node_network_info)
ATTRIBUTES: dict[str, str | None] = {
    "addr_assign_type": "address_assign_type",
    "address": None,
    "broadcast": None,
    "carrier": "carrier",
    "carrier_changes": "carrier_changes_total",
    "carrier_up_count": "carrier_up_changes_total",
    "carrier_down_count": "carrier_down_changes_total",
    "dev_id": "device_id",
    "dormant": "dormant",
    "duplex": None,
    "flags": "flags",
    "ifalias": None,
    "ifindex": "iface_id",
    "iflink": "iface_link",
    "link_mode": "iface_link_mode",
    "mtu": "mtu_bytes",
    "name_assign_type": "name_assign_type",
    "netdev_group": "net_dev_group",
    "operstate": None,
    "speed": "speed_bytes",
    "tx_queue_len": "transmit_queue_length",
    "type": "protocol_type",
}
_METRICS = {a: f"node_network_{s}" for a, s in ATTRIBUTES.items() if s is not None}
IFF_UP = 0x1

# Per-path and per-value results, remembered: paths repeat from sweep to sweep and host to
# host, and so do most attribute values (mtu, flags, type ...). Cleared when large.
_PATHS: dict[str, tuple[str, str] | None] = {}
_NUMBERS: dict[str, float | None] = {}
_CACHE_MAX = 4096
_UNSEEN = ("", "")  # _PATHS.get default: path not seen yet (None: not an attribute file)

# ifalias is set by users: read by the shell, not with the kernel-formatted files
_COMMAND = """for __sg_d in /sys/class/net/*; do
  __sg_v=; { read -r __sg_v || [ -n "$__sg_v" ]; } < "$__sg_d/ifalias" || continue
  printf 'I %s\\nifalias=%s\\n' "${__sg_d##*/}" "$__sg_v"
done 2>/dev/null
:"""


class NetclassCollector(Collector):
    name = "netclass"
    default_enabled = True
    options = (
        Option("ignored_devices", "^$", "regex of interfaces to skip", "regex"),
        Option(
            "ignore_invalid_speed", False, "drop speed -1 (unknown) instead of reporting it", "bool"
        ),
    )

    def files(self, options: Options) -> tuple[str, ...]:
        return tuple(f"/sys/class/net/*/{a}" for a in ATTRIBUTES if a != "ifalias")

    def command(self, options: Options) -> str:
        return _COMMAND

    def host_op(self, options: Options) -> dict[str, Any]:
        """The reader prints ``render``'s text itself: no file header per attribute, and
        ifalias without a shell."""
        leaves = [a for a in ATTRIBUTES if a != "ifalias"]
        return {"op": "attributes", "own_files": True, "dir": "/sys/class/net",
                "leaves": leaves, "alias": "ifalias"}

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """``I <iface>`` then ``<attribute>=<first line>`` per interface, then ifalias."""
        ifaces: dict[str, list[str]] = {}  # iface -> its "I" line and attribute lines
        get = ifaces.get
        for path, content in files:
            where = _PATHS.get(path, _UNSEEN)
            if where is _UNSEEN:
                where = _iface_and_key(path)
            if where is not None:
                iface, key = where
                lines = get(iface)
                if lines is None:
                    lines = ifaces[iface] = [f"I {iface}\n"]
                lines.append(key + content.partition("\n")[0] + "\n")
        return "".join(["".join(lines) for lines in ifaces.values()]) + stdout

    def parse(self, stdout: str, options: Options) -> Samples:
        ignored = DeviceFilter.of(options["ignored_devices"])
        ifaces: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for line in stdout.splitlines():
            key, eq, value = line.partition("=")
            if eq and key in ATTRIBUTES:  # (no attribute name starts with "I ")
                if current is not None:
                    current[key] = value.strip()
            elif line.startswith("I "):
                name = line[2:]
                current = None if ignored.ignored(name) else ifaces.setdefault(name, {})
        out = Samples()
        for dev, attrs in ifaces.items():
            _add_device(out, dev, attrs, options)
        return out


def _iface_and_key(path: str) -> tuple[str, str] | None:
    """``("eth0", "mtu=")`` for ``/sys/class/net/eth0/mtu``; ``None`` for other depths."""
    parts = path.split("/")
    found = (parts[4], parts[5] + "=") if len(parts) == 6 else None
    if len(_PATHS) >= _CACHE_MAX:
        _PATHS.clear()
    _PATHS[path] = found
    return found


def _number(text: str) -> float | None:
    """A finite decimal or ``0x`` hex number (``parse_number``), or ``None``; never raises."""
    if text in _NUMBERS:
        return _NUMBERS[text]
    # float() of ASCII digits is float(int()), except inf where int() is too large for a float
    number = float(text) if text.isdigit() and text.isascii() else parse_number(text)
    if number is not None and not math.isfinite(number):  # "nan" and "inf" parse as floats
        number = None
    if len(_NUMBERS) >= _CACHE_MAX:
        _NUMBERS.clear()
    _NUMBERS[text] = number
    return number


def _add_device(out: Samples, dev: str, attrs: dict[str, str], options: Options) -> None:
    """The samples of interface ``dev`` from its ``attrs`` (attribute file -> value)."""
    new = tuple.__new__  # Sample without its Python-level __new__ (labels built sorted)
    append = out.append
    get = attrs.get
    labels = (("device", dev),)
    operstate = get("operstate", "")
    append(new(Sample, ("node_network_up", 1.0 if operstate == "up" else 0.0, labels)))
    flags = _number(attrs["flags"]) if get("flags") else None  # parse_number's value
    admin = "unknown" if flags is None else ("up" if int(flags) & IFF_UP else "down")
    info = (
        ("address", get("address", "")),
        ("adminstate", admin),
        ("broadcast", get("broadcast", "")),
        ("device", dev),
        ("duplex", get("duplex", "")),
        ("ifalias", get("ifalias", "")),
        ("operstate", operstate),
    )
    append(new(Sample, ("node_network_info", 1.0, info)))
    for attr, metric in _METRICS.items():
        text = get(attr)
        if not text:
            continue
        number = _number(text)
        if number is None:
            out.problems.append(f"{dev}: unreadable {attr} {text[:40]!r}")
            continue
        if attr == "speed":
            if number < 0 and options["ignore_invalid_speed"]:
                continue
            number = number * 1000 * 1000 / 8
            if not math.isfinite(number):  # beyond a float once in bytes
                out.problems.append(f"{dev}: unreadable {attr} {text[:40]!r}")
                continue
            number = float(int(number))
        append(new(Sample, (metric, number, labels)))
