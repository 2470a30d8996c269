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

from collections.abc import Sequence

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

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """``I <iface>`` then ``<attribute>=<first line>`` per interface, then ifalias."""
        ifaces: dict[str, list[str]] = {}
        for path, content in files:
            parts = path.split("/")
            if len(parts) == 6:
                value = content.partition("\n")[0]
                ifaces.setdefault(parts[4], []).append(f"{parts[5]}={value}\n")
        out = [f"I {name}\n" + "".join(attrs) for name, attrs in ifaces.items()]
        return "".join(out) + stdout

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        ignored = DeviceFilter.of(options["ignored_devices"])
        ifaces: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for line in stdout.splitlines():
            if line.startswith("I "):
                name = line[2:]
                current = None if ignored.ignored(name) else ifaces.setdefault(name, {})
            elif current is not None and "=" in line:
                key, _, value = line.partition("=")
                if key in ATTRIBUTES:
                    current[key] = value.strip()
        for dev, attrs in ifaces.items():
            labels = (("device", dev),)
            operstate = attrs.get("operstate", "")
            out.append(Sample("node_network_up", 1.0 if operstate == "up" else 0.0, labels))
            flags = parse_number(attrs["flags"]) if attrs.get("flags") else None
            admin = "unknown" if flags is None else ("up" if int(flags) & IFF_UP else "down")
            out.add(
                "node_network_info",
                1,
                device=dev,
                address=attrs.get("address", ""),
                broadcast=attrs.get("broadcast", ""),
                duplex=attrs.get("duplex", ""),
                operstate=operstate,
                adminstate=admin,
                ifalias=attrs.get("ifalias", ""),
            )
            for attr, metric in _METRICS.items():
                text = attrs.get(attr)
                if not text:
                    continue
                number = float(text) if text.isdigit() else parse_number(text)
                if number is None:
                    out.problems.append(f"{dev}: unreadable {attr} {text[:40]!r}")
                    continue
                if attr == "speed":
                    if number < 0 and options["ignore_invalid_speed"]:
                        continue
                    number = float(int(number * 1000 * 1000 / 8))
                out.append(Sample(metric, number, labels))
        return out
