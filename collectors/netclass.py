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

import re

from collectors.base import Collector, Option, Options, Samples, parse_number

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
IFF_UP = 0x1

_COMMAND = """for __sg_d in /sys/class/net/*; do
  [ -d "$__sg_d" ] || continue
  printf 'I %s\\n' "${__sg_d##*/}"
  for __sg_a in @ATTRS@; do
    __sg_v=; { read -r __sg_v || [ -n "$__sg_v" ]; } < "$__sg_d/$__sg_a" &&
      printf '%s=%s\\n' "$__sg_a" "$__sg_v"
  done
done
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

    def command(self, options: Options) -> str:
        return _COMMAND.replace("@ATTRS@", " ".join(ATTRIBUTES))

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        ignored = re.compile(options["ignored_devices"])
        ifaces: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for line in stdout.splitlines():
            if line.startswith("I "):
                name = line[2:]
                current = None if ignored.search(name) else ifaces.setdefault(name, {})
            elif current is not None and "=" in line:
                key, _, value = line.partition("=")
                if key in ATTRIBUTES:
                    current[key] = value.strip()
        for dev, attrs in ifaces.items():
            operstate = attrs.get("operstate", "")
            out.add("node_network_up", 1 if operstate == "up" else 0, device=dev)
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
            for attr, suffix in ATTRIBUTES.items():
                if suffix is None or not attrs.get(attr):
                    continue
                number = parse_number(attrs[attr])
                if number is None:
                    out.problems.append(f"{dev}: unreadable {attr} {attrs[attr][:40]!r}")
                    continue
                if attr == "speed":
                    if number < 0 and options["ignore_invalid_speed"]:
                        continue
                    number = float(int(number * 1000 * 1000 / 8))
                out.add(f"node_network_{suffix}", number, device=dev)
        return out
