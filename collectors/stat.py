"""stat: kernel counters from /proc/stat, as node_exporter's stat collector.

Shares the ``cat /proc/stat`` of the cpu collector (identical commands run once).

Example result::

    node_boot_time_seconds 1795418003
    node_context_switches_total 275394
    node_forks_total 5835
    node_intr_total 170155
    node_procs_blocked 0
    node_procs_running 3
"""

from __future__ import annotations

from collectors.base import Collector, Options, Samples, kernel_text

FIELDS = {
    "ctxt": "node_context_switches_total",
    "btime": "node_boot_time_seconds",
    "processes": "node_forks_total",
    "procs_running": "node_procs_running",
    "procs_blocked": "node_procs_blocked",
    "intr": "node_intr_total",  # the first number of the line is the total
}


class StatCollector(Collector):
    name = "stat"
    default_enabled = True
    processes = "0 (shares the cpu collector's cat /proc/stat)"

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/stat",)

    def command(self, options: Options) -> str:
        return ""

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        for line in stdout.splitlines():
            fields = line.split(None, 2)
            if len(fields) < 2 or fields[0] not in FIELDS:
                continue
            try:
                value = float(int(fields[1]))
            except (ValueError, OverflowError):  # OverflowError: too large for a float
                out.problems.append(f"unreadable /proc/stat line {fields[0]!r}")
                continue
            out.add(FIELDS[fields[0]], value)
        if not out and not out.problems:
            out.problems.append("no counters found in /proc/stat")
        return out
