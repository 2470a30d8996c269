"""vmstat: selected /proc/vmstat fields as ``node_vmstat_<field>``, as node_exporter.

node_exporter's default field filter ``^(oom_kill|pgpg|pswp|pg.*fault).*`` (option ``fields``).

Example result::

    node_vmstat_oom_kill 0
    node_vmstat_pgfault 4431961
    node_vmstat_pgmajfault 3065
"""

from __future__ import annotations

import re

from collectors.base import Collector, Option, Options, Samples, kernel_text
from collectors.sample import Sample

FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"


_FIELD = re.compile(r"[a-z0-9_]+")
_INVALID = "\0"
_CACHE: dict[str, dict[str, str]] = {}  # fields regex -> field -> metric, "" or _INVALID

# Fast path for the kernel's own format with the default filter: ~190 lines of which 7 are
# kept, so two regex passes beat splitting every line. A text of only ``<field> <digits>``
# lines (and blank ones) can have no problem, and FIELDS keeps exactly the fields
# _DEFAULT_KEPT finds (FIELDS' ``.*`` spans only [a-z0-9_] within a valid field).
_KERNEL_FORMAT = re.compile(r"(?:[a-z0-9_]++ [0-9]++\n|\n)*+(?:[a-z0-9_]++ [0-9]++)?")
_DEFAULT_KEPT = re.compile(r"\n((?:oom_kill|pgpg|pswp|pg[a-z0-9_]*fault)[a-z0-9_]*) ([0-9]+)(?=\n)")


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


def _parse_default(stdout: str) -> Samples | None:
    """The samples of a kernel-formatted text with the default filter; ``None`` otherwise."""
    if _KERNEL_FORMAT.fullmatch(stdout) is None:
        return None
    new = tuple.__new__
    try:
        return Samples(
            new(Sample, ("node_vmstat_" + field, float(int(value)), ()))
            for field, value in _DEFAULT_KEPT.findall(f"\n{stdout}\n")
        )
    except (ValueError, OverflowError):  # too long for int() or a float: parse reports it
        return None


class VmstatCollector(Collector):
    name = "vmstat"
    default_enabled = True
    options = (Option("fields", FIELDS, "regex of /proc/vmstat fields to keep", "regex"),)

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/vmstat",)

    def command(self, options: Options) -> str:
        return ""

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        fields = options["fields"]
        if fields == FIELDS and (fast := _parse_default(stdout)) is not None:
            return fast
        out = Samples()
        names = _names_for(fields)
        get = names.get
        for line in stdout.splitlines():
            parts = line.split()
            if not parts:
                continue
            name = get(parts[0])
            if name is None:
                name = names[parts[0]] = _name(fields, parts[0])
            if len(parts) != 2 or name is _INVALID:
                out.problems.append(f"invalid line in vmstat: {line[:80]!r}")
                continue
            if not name:
                continue
            try:
                out.append(Sample(name, float(int(parts[1]))))
            except (ValueError, OverflowError):
                out.problems.append(f"invalid value in vmstat: {line[:80]!r}")
        return out
