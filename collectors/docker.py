"""docker: containers seen by a ``docker`` CLI on the host (default off).

``docker ps -a`` for every container's state and ``docker stats --no-stream`` (about two
seconds: docker samples CPU twice) for running ones. No CLI: nothing runs, nothing is
reported; a CLI that cannot reach its daemon fails the collector.

- ``serverguard_container_state{name,id,image,state} 1`` (the current state only);
- ``serverguard_container_cpu_usage_ratio{name,id}``: docker's CPU % / 100 (1 = one CPU);
- ``serverguard_container_memory_usage_bytes{name,id}``, ``..._memory_limit_bytes``;
- ``serverguard_container_pids{name,id}``.

``id`` is the 12-character short ID.

Example result::

    serverguard_container_state{id="3f4e5d6c7b8a",image="nginx:1.25",name="web",state="running"} 1
    serverguard_container_memory_usage_bytes{id="3f4e5d6c7b8a",name="web"} 7340032
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from collectors.base import Collector, Option, Options, Samples

_COMMAND = r"""if command -v docker >/dev/null 2>&1; then
  __sg_e=; printf '@@ps\n'; docker ps -a --no-trunc --format '{{json .}}' || __sg_e=1
  @STATS@
  [ -z "$__sg_e" ]
fi"""
_STATS = (
    "printf '@@stats\\n'; docker stats --no-stream --no-trunc --format '{{json .}}' || __sg_e=1"
)
_SIZE = re.compile(r"^\s*([0-9.]+)\s*([KMGTPE]?i?B)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "pb": 1e15,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}


def parse_size(text: str) -> float | None:
    """``7.5MiB`` -> 7864320.0; ``1.2kB`` -> 1200.0; ``None`` when unreadable."""
    m = _SIZE.match(text)
    if not m:
        return None
    unit = _UNITS.get((m.group(2) or "").lower())
    try:
        return None if unit is None else float(m.group(1)) * unit
    except ValueError:  # "1.2.3" or "."
        return None


class DockerCollector(Collector):
    name = "docker"
    default_enabled = False
    processes = "2 (docker ps, docker stats) where docker exists, else 0"
    options = (Option("stats", True, "run docker stats (slow: ~2 s) for CPU and memory", "bool"),)

    def command(self, options: Options) -> str:
        return _COMMAND.replace("@STATS@", _STATS if options["stats"] else ":")

    def host_op(self, options: Options) -> dict[str, Any]:
        return {"op": "sh", "if_command": "docker"}  # no shell where no docker CLI

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        part = ""
        for line in stdout.splitlines():
            if line in ("@@ps", "@@stats"):
                part = line
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
            except ValueError:
                out.problems.append(f"unreadable docker output: {line[:80]!r}")
                continue
            cid = str(row.get("ID", ""))[:12]
            name = str(row.get("Names", row.get("Name", "")))
            if part == "@@ps":
                status = str(row.get("Status", "")).split(" ")[0].lower()
                state = str(row.get("State", "")) or status
                out.add(
                    "serverguard_container_state",
                    1,
                    name=name,
                    id=cid,
                    image=str(row.get("Image", "")),
                    state=state,
                )
            elif part == "@@stats":
                self._stats(out, row, name, cid)
        return out

    @staticmethod
    def _stats(out: Samples, row: dict[str, object], name: str, cid: str) -> None:
        cpu = str(row.get("CPUPerc", "")).rstrip("%")
        try:
            out.add("serverguard_container_cpu_usage_ratio", float(cpu) / 100, name=name, id=cid)
        except ValueError:
            out.notes.append(f"{name}: unreadable CPUPerc {cpu!r}")
        usage, _, limit = str(row.get("MemUsage", "")).partition("/")
        for metric, text in (("usage", usage), ("limit", limit)):
            value = parse_size(text)
            if value is not None:
                out.add(f"serverguard_container_memory_{metric}_bytes", value, name=name, id=cid)
        pids = str(row.get("PIDs", ""))
        # (ASCII digits only: "²".isdigit() is true; a number too large for a float is inf)
        if pids.isascii() and pids.isdigit() and math.isfinite(count := float(pids)):
            out.add("serverguard_container_pids", count, name=name, id=cid)
