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

_COMMAND = r"""__sg_n=/proc/sys/net/netfilter
if [ -r $__sg_n/nf_conntrack_count ]; then
  printf 'counts\n'; cat $__sg_n/nf_conntrack_count $__sg_n/nf_conntrack_max
  [ -r /proc/net/stat/nf_conntrack ] && __sg_cat /proc/net/stat/nf_conntrack
fi
:"""


class ConntrackCollector(Collector):
    name = "conntrack"
    default_enabled = True
    processes = "1 (cat of the two sysctl files) where conntrack is loaded, else 0"

    def command(self, options: Options) -> str:
        return _COMMAND

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
