"""vmstat: selected /proc/vmstat fields as ``node_vmstat_<field>``, as node_exporter.

node_exporter's default field filter ``^(oom_kill|pgpg|pswp|pg.*fault).*`` (option ``fields``).

Example result::

    node_vmstat_oom_kill 0
    node_vmstat_pgfault 4431961
    node_vmstat_pgmajfault 3065
"""

from __future__ import annotations

import re

from collectors.base import Collector, Option, Options, Samples
from collectors.sample import Sample

FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"


_FIELD = re.compile(r"[a-z0-9_]+")
_INVALID = "\0"
_CACHE: dict[str, dict[str, str]] = {}  # fields regex -> field -> metric, "" or _INVALID


def _names_for(fields: str) -> dict[str, str]:
    names = _CACHE.setdefault(fields, {})
    if len(names) > 4096:
        names.clear()
    return names


def _name(fields: str, field: str) -> str:
    """The metric for ``field``, "" when the filter drops it, ``_INVALID`` for a bad name."""
    if not _FIELD.fullmatch(field):
        return _INVALID
    return f"node_vmstat_{field}" if re.search(fields, field) else ""


class VmstatCollector(Collector):
    name = "vmstat"
    default_enabled = True
    options = (Option("fields", FIELDS, "regex of /proc/vmstat fields to keep", "regex"),)

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/vmstat",)

    def command(self, options: Options) -> str:
        return ""

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        names = _names_for(options["fields"])
        for line in stdout.splitlines():
            parts = line.split()
            if not parts:
                continue
            name = names.get(parts[0])
            if name is None:
                name = names[parts[0]] = _name(options["fields"], parts[0])
            if len(parts) != 2 or name is _INVALID:
                out.problems.append(f"invalid line in vmstat: {line[:80]!r}")
                continue
            if not name:
                continue
            try:
                out.append(Sample(name, float(int(parts[1]))))
            except ValueError:
                out.problems.append(f"invalid value in vmstat: {line[:80]!r}")
        return out
