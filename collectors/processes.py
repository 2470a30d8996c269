"""processes: process states and the top processes by CPU and by memory.

One ``cat`` of pid_max, threads-max and /proc/[0-9]*/stat (processes vanishing meanwhile are
skipped) gives node_exporter's
processes collector metrics (``node_processes_state{state}``, ``node_processes_pids``,
``node_processes_threads``, ``node_processes_max_processes``, ``node_processes_max_threads``),
``serverguard_processes_zombie``, and, bounded to ``top`` processes each (0 turns them off):

- ``serverguard_process_cpu_seconds_total{pid,comm}``: user+system time since the process
  started (ranked by that total, so long-running busy daemons lead);
- ``serverguard_process_resident_memory_bytes{pid,comm}``: RSS pages times the page size,
  read from the shell's own /proc/self/smaps ``KernelPageSize`` (4096 when absent).

Example result::

    node_processes_state{state="S"} 71
    serverguard_processes_zombie 0
    serverguard_process_resident_memory_bytes{comm="python3",pid="812"} 52428800
"""

from __future__ import annotations

import heapq
import math

from collectors.base import Collector, Option, Options, Samples

USER_HZ = 100.0

_COMMAND = r"""while read -r __sg_k __sg_v __sg_x; do
  [ "$__sg_k" = KernelPageSize: ] && printf 'P %s %s\n' "$__sg_v" "$__sg_x" && break
done < /proc/self/smaps
cat /proc/sys/kernel/pid_max /proc/sys/kernel/threads-max /proc/[0-9]*/stat
:"""


class ProcessesCollector(Collector):
    name = "processes"
    # Off by default, as in node_exporter: it reads one /proc/<pid>/stat per process (about
    # 40 us of kernel time each on a VM: 25 ms per sweep on a host with 600 processes).
    default_enabled = False
    processes = "1 (cat /proc/[0-9]*/stat)"
    options = (Option("top", 5, "how many processes to list by CPU and by memory", "int"),)

    def command(self, options: Options) -> str:
        return _COMMAND

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        page = 4096.0
        states: dict[str, int] = {}
        threads = 0
        # pid, comm, cpu seconds, rss pages, pid as a number
        procs: list[tuple[str, str, float, float, int]] = []
        lines = stdout.splitlines()
        # cat prints pid_max and threads-max first (sysctl files: read byte by byte by sh's
        # read they would yield one digit), then one line per process
        # (ASCII digits only: "²".isdigit() is true; a number too large for a float is inf)
        limits = [float(ln) for ln in lines[:3] if ln.isascii() and ln.strip().isdigit()]
        if len(limits) == 2 and all(map(math.isfinite, limits)):
            out.add("node_processes_max_processes", limits[0])
            out.add("node_processes_max_threads", limits[1])
        for line in lines:
            if line.strip().isdigit():
                continue
            if line.startswith("P "):
                parts = line.split()
                if len(parts) >= 2 and parts[1].isascii() and parts[1].isdigit():
                    unit = parts[2].lower() if len(parts) > 2 else "kb"
                    size = float(parts[1]) * (1024 if unit == "kb" else 1)
                    page = size if math.isfinite(size) else page
                continue
            pid, sep, rest = line.partition(" (")
            comm, sep2, tail = rest.rpartition(") ")
            fields = tail.split(None, 22)
            if not sep or not sep2 or not pid.isdigit() or len(fields) < 22 or not pid.isascii():
                if line.strip():
                    out.notes.append(f"unreadable process stat line: {line[:60]!r}")
                continue
            try:  # OverflowError: a number too large for a float
                cpu = (int(fields[11]) + int(fields[12])) / USER_HZ
                nthreads, rss = int(fields[17]), float(int(fields[21]))
                number = int(pid)
            except (ValueError, OverflowError):
                out.notes.append(f"unreadable process stat line: {line[:60]!r}")
                continue
            states[fields[0]] = states.get(fields[0], 0) + 1
            threads += nthreads
            procs.append((pid, comm, cpu, rss, number))
        if not procs:
            out.problems.append("no process read from /proc/[0-9]*/stat")
            return out
        for state, count in sorted(states.items()):
            out.add("node_processes_state", float(count), state=state)
        out.add("node_processes_pids", float(len(procs)))
        try:
            out.add("node_processes_threads", float(threads))
        except OverflowError:  # a sum too large for a float
            out.notes.append("unreadable thread counts in /proc/[0-9]*/stat")
        out.add("serverguard_processes_zombie", float(states.get("Z", 0)))
        top = options["top"]
        if top:
            by_cpu = heapq.nsmallest(top, procs, key=lambda p: (-p[2], p[4]))
            for pid, comm, cpu, _rss, _ in by_cpu:
                out.add("serverguard_process_cpu_seconds_total", cpu, pid=pid, comm=comm)
            by_rss = heapq.nsmallest(top, procs, key=lambda p: (-p[3], p[4]))
            for pid, comm, _cpu, pages, _ in by_rss:
                out.add(
                    "serverguard_process_resident_memory_bytes", pages * page, pid=pid, comm=comm
                )
        return out
