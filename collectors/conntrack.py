"""conntrack: netfilter connection tracking, as node_exporter's conntrack collector.

``node_nf_conntrack_entries`` and ``node_nf_conntrack_entries_limit`` when the module is
loaded (no files: no samples), plus the per-CPU /proc/net/stat/nf_conntrack counters summed
(``node_nf_conntrack_stat_found`` ...; hex in the file).

Example result::

    node_nf_conntrack_entries 12
    node_nf_conntrack_entries_limit 262144
    node_nf_conntrack_stat_drop 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from collectors.base import Collector, Options, Samples, kernel_text
from collectors.sample import Sample

STATS = (
    "found",
    "invalid",
    "ignore",
    "insert",
    "insert_failed",
    "drop",
    "early_drop",
    "search_restart",
)

_METRICS = {stat: f"node_nf_conntrack_stat_{stat}" for stat in STATS}

_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
_STAT = "/proc/net/stat/nf_conntrack"


class ConntrackCollector(Collector):
    name = "conntrack"
    default_enabled = True
    processes = "0 (read with the other collectors' files)"

    def files(self, options: Options) -> tuple[str, ...]:
        return (_COUNT, _MAX, _STAT)

    def command(self, options: Options) -> str:
        return ""

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """``counts``, the count, the limit, then the per-CPU table (no module: nothing)."""
        got = dict(files)
        if _COUNT not in got:
            return ""
        return "counts\n" + got[_COUNT] + got.get(_MAX, "") + got.get(_STAT, "")

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        lines = stdout.splitlines()
        if lines[:1] == ["counts"] and len(lines) >= 3:
            # ASCII digits only ("²".isdigit() is true), and below inf as floats
            counts = [float(t) for t in lines[1:3] if t.isascii() and t.strip().isdigit()]
            if len(counts) == 2 and all(map(math.isfinite, counts)):
                out.add("node_nf_conntrack_entries", counts[0])
                out.add("node_nf_conntrack_entries_limit", counts[1])
            else:
                out.problems.append("unreadable nf_conntrack_count or nf_conntrack_max")
        totals: dict[str, int] = {}
        header: list[str] | None = None
        for line in lines[3:]:
            parts = line.split()
            if parts and parts[0] == "entries":
                header = parts
            elif header is not None and len(parts) == len(header):
                try:  # (the columns before a bad one still count)
                    for col, value in zip(header, parts, strict=True):
                        totals[col] = totals.get(col, 0) + int(value, 16)
                except ValueError:
                    out.problems.append(f"invalid line in nf_conntrack stats: {line[:80]!r}")
        new = tuple.__new__  # Sample without its Python-level __new__
        for stat, metric in _METRICS.items():
            if stat in totals:
                try:
                    total = float(totals[stat])
                except OverflowError:  # a sum too large for a float
                    out.problems.append(f"invalid {stat} total in nf_conntrack stats")
                    continue
                out.append(new(Sample, (metric, total, ())))
        return out

