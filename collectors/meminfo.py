"""meminfo: every /proc/meminfo field as ``node_memory_<Field>[_bytes]``, as node_exporter.

node_exporter's naming rule: ``Active(anon)`` becomes ``Active_anon``; a value with a unit (kB)
is multiplied by 1024 and gets ``_bytes``; a value without one (``HugePages_Total``) keeps the
bare name. (node_exporter 1.9 narrowed its list to the fields procfs knows; for those fields
names and values are identical, newer kernel fields are simply kept here.)

Example result for ``MemTotal: 24683656 kB`` and ``HugePages_Total: 0``::

    node_memory_MemTotal_bytes 25276063744
    node_memory_HugePages_Total 0
"""

from __future__ import annotations

import re

from collectors.base import Collector, Options, Samples
from collectors.sample import Sample

_PARENS = re.compile(r"\((.*)\)")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


_NAMES: dict[tuple[str, bool], str | None] = {}


def _metric_name(field: str, has_unit: bool) -> str | None:
    """``Active(anon):`` -> ``node_memory_Active_anon_bytes``; ``None`` if not a valid name."""
    key = (field, has_unit)
    if key in _NAMES:
        return _NAMES[key]
    name: str | None = "node_memory_" + _PARENS.sub(r"_\1", field[:-1])
    name = name + "_bytes" if has_unit else name  # type: ignore[operator]
    if not _NAME.match(name or ""):
        name = None
    if len(_NAMES) < 4096:
        _NAMES[key] = name
    return name


class MeminfoCollector(Collector):
    name = "meminfo"
    default_enabled = True

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/meminfo",)

    def command(self, options: Options) -> str:
        return ""

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        for line in stdout.splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) not in (2, 3) or not parts[0].endswith(":"):
                out.problems.append(f"invalid line in meminfo: {line[:80]!r}")
                continue
            try:
                value = float(int(parts[1]))
            except ValueError:
                out.problems.append(f"invalid value in meminfo: {line[:80]!r}")
                continue
            name = _metric_name(parts[0], len(parts) == 3)
            if name is None:
                out.problems.append(f"invalid field name in meminfo: {parts[0]!r}")
                continue
            out.append(Sample(name, value * 1024 if len(parts) == 3 else value))
        if not out and not out.problems:
            out.problems.append("empty /proc/meminfo")
        return out
