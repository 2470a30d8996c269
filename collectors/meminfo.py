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

from collectors.base import Collector, Options, Samples, kernel_text
from collectors.sample import Sample

_PARENS = re.compile(r"\((.*)\)")
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


# field ("Active(anon):") -> metric or None, for values with a unit and for those without
_BYTES_NAMES: dict[str, str | None] = {}
_BARE_NAMES: dict[str, str | None] = {}
_UNKNOWN = "\0"  # not looked up yet


def _metric_name(field: str, has_unit: bool) -> str | None:
    """``Active(anon):`` -> ``node_memory_Active_anon_bytes``; ``None`` if not a valid name."""
    names = _BYTES_NAMES if has_unit else _BARE_NAMES
    if field in names:
        return names[field]
    name: str | None = "node_memory_" + _PARENS.sub(r"_\1", field[:-1])
    name = name + "_bytes" if has_unit else name  # type: ignore[operator]
    if not _NAME.match(name or ""):
        name = None
    if len(names) < 4096:
        names[field] = name
    return name


class MeminfoCollector(Collector):
    name = "meminfo"
    default_enabled = True

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/meminfo",)

    def command(self, options: Options) -> str:
        return ""

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        append = out.append
        new = tuple.__new__  # Sample without its Python-level __new__
        for line in stdout.splitlines():
            parts = line.split()
            n = len(parts)
            if n == 2 or n == 3:
                name = (_BYTES_NAMES if n == 3 else _BARE_NAMES).get(parts[0], _UNKNOWN)
                if name is _UNKNOWN and parts[0].endswith(":"):  # (known fields end with ":")
                    name = _metric_name(parts[0], n == 3)
            elif not parts:
                continue
            else:
                name = _UNKNOWN
            if name is _UNKNOWN:
                out.problems.append(f"invalid line in meminfo: {line[:80]!r}")
                continue
            try:
                # int() * 1024.0 is float(int()) * 1024, exactly (a power of two); both raise
                # OverflowError for a number too large for a float
                value = int(parts[1]) * 1024.0 if n == 3 else float(int(parts[1]))
            except (ValueError, OverflowError):
                out.problems.append(f"invalid value in meminfo: {line[:80]!r}")
                continue
            if name is None:
                out.problems.append(f"invalid field name in meminfo: {parts[0]!r}")
                continue
            append(new(Sample, (name, value, ())))
        if not out and not out.problems:
            out.problems.append("empty /proc/meminfo")
        return out
