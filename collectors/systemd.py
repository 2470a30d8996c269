"""systemd: unit states, as node_exporter's systemd collector (which talks D-Bus; we run
``systemctl``).

Only on hosts booted with systemd (``/run/systemd/system`` exists, the test ``sd_booted()``
makes); elsewhere nothing runs and nothing is reported. Two processes:
``systemctl list-units --all`` for the states and ``systemctl show -p Id -p Type '*.service'``
for the service ``type`` label node_exporter carries (empty for other unit kinds).

For every loaded unit passing the filters (node_exporter's defaults: include ``.+``, exclude
``.+\\.(automount|device|mount|scope|slice)``, both anchored: a unit name must match the
whole pattern), ``node_systemd_unit_state`` is 1 for its current state and 0 for the four
others; ``node_systemd_units{state}`` counts all units by state.

Example result::

    node_systemd_unit_state{name="ssh.service",state="active",type="notify"} 1
    node_systemd_unit_state{name="ssh.service",state="failed",type="notify"} 0
    node_systemd_units{state="active"} 87
"""

from __future__ import annotations

import re
from typing import Any

from collectors.base import Collector, Option, Options, Samples

STATES = ("active", "activating", "deactivating", "inactive", "failed")
UNIT_INCLUDE = ".+"
UNIT_EXCLUDE = r".+\.(automount|device|mount|scope|slice)"

_COMMAND = r"""if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl list-units --all --plain --no-legend --no-pager --full
  @TYPES@
fi
:"""
_TYPES = """printf '%s\\n' '@@types'
  systemctl show --no-pager -p Id -p Type '*.service'"""


class SystemdCollector(Collector):
    name = "systemd"
    default_enabled = True
    processes = "2 (systemctl list-units, systemctl show) on systemd hosts, else 0"
    options = (
        Option("unit_include", UNIT_INCLUDE, "regex units must match (anchored)", "regex"),
        Option("unit_exclude", UNIT_EXCLUDE, "regex of units to skip (anchored)", "regex"),
        Option("service_type_label", True, "run systemctl show for services' type label", "bool"),
    )

    def command(self, options: Options) -> str:
        types = _TYPES if options["service_type_label"] else ":"
        return _COMMAND.replace("@TYPES@", types)

    def host_op(self, options: Options) -> dict[str, Any]:
        """The same two systemctl, without a shell; nothing where systemd does not run."""
        steps: list[Any] = [
            ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--no-pager", "--full"]
        ]
        if options["service_type_label"]:
            steps += ["@@types", ["systemctl", "show", "--no-pager", "-p", "Id", "-p", "Type",
                                  "*.service"]]
        return {"op": "run", "steps": steps, "if_dir": "/run/systemd/system",
                "if_command": "systemctl"}

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        # Anchored as node_exporter's ^(?:...)$, but by fullmatch of the pattern as given:
        # wrapped, a pattern that compiles alone (the one option validation checks) may not,
        # as "(?i).+\\.service" (Python wants global flags at the very start).
        include = re.compile(options["unit_include"])
        exclude = re.compile(options["unit_exclude"])
        units: list[tuple[str, str, str]] = []  # name, load, active
        types: dict[str, str] = {}
        in_types = False
        block: dict[str, str] = {}
        for line in [*stdout.splitlines(), ""]:
            if line == "@@types":
                in_types = True
                continue
            if in_types:
                if not line.strip():
                    if "Id" in block:
                        types[block["Id"]] = block.get("Type", "")
                    block = {}
                else:
                    key, _, value = line.partition("=")
                    block[key] = value
                continue
            fields = line.split()
            if fields and fields[0] in ("\u25cf", "*", "\u00d7"):  # failed/broken marks
                fields = fields[1:]
            if len(fields) < 4:
                continue
            units.append((fields[0], fields[1], fields[2]))
        counts = dict.fromkeys(STATES, 0)
        for name, load, active in units:
            counts[active] = counts.get(active, 0) + 1
            if load != "loaded" or not include.fullmatch(name) or exclude.fullmatch(name):
                continue
            kind = types.get(name, "") if name.endswith(".service") else ""
            for state in STATES:
                out.add(
                    "node_systemd_unit_state",
                    1 if state == active else 0,
                    name=name,
                    state=state,
                    type=kind,
                )
        if units:
            for state, count in counts.items():
                out.add("node_systemd_units", float(count), state=state)
        return out
