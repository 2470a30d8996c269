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

from collections.abc import Sequence

from collectors.base import Collector, Options, Samples

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

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        header: list[str] | None = None
        totals: dict[str, int] = {}
        lines = stdout.splitlines()
        if lines[:1] == ["counts"] and len(lines) >= 3:
            if lines[1].strip().isdigit() and lines[2].strip().isdigit():
                out.add("node_nf_conntrack_entries", float(lines[1]))
                out.add("node_nf_conntrack_entries_limit", float(lines[2]))
            else:
                out.problems.append("unreadable nf_conntrack_count or nf_conntrack_max")
        for line in lines[3:]:
            parts = line.split()
            if parts and parts[0] == "entries":
                header = parts
            elif header is not None and len(parts) == len(header):
                try:
                    for col, value in zip(header, parts, strict=True):
                        totals[col] = totals.get(col, 0) + int(value, 16)
                except ValueError:
                    out.problems.append(f"invalid line in nf_conntrack stats: {line[:80]!r}")
        for stat in STATS:
            if stat in totals:
                out.add(f"node_nf_conntrack_stat_{stat}", float(totals[stat]))
        return out
