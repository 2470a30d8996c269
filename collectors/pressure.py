"""pressure: pressure stall information from /proc/pressure/*, as node_exporter.

Totals are microseconds and become seconds. Like node_exporter: cpu gives only ``waiting``
(``some``; the system-wide cpu ``full`` line is always 0), io and memory give ``waiting`` and
``stalled`` (``full``), irq gives ``stalled``. A kernel without PSI (or booted ``psi=0``)
yields no samples and no problem.

Example result::

    node_pressure_cpu_waiting_seconds_total 4.680209
    node_pressure_io_stalled_seconds_total 2.202051
    node_pressure_memory_waiting_seconds_total 0
"""

from __future__ import annotations

from collections.abc import Sequence

from collectors.base import Collector, Options, Samples, kernel_text

# (resource, line kind) -> metric
METRICS = {
    ("cpu", "some"): "node_pressure_cpu_waiting_seconds_total",
    ("io", "some"): "node_pressure_io_waiting_seconds_total",
    ("io", "full"): "node_pressure_io_stalled_seconds_total",
    ("memory", "some"): "node_pressure_memory_waiting_seconds_total",
    ("memory", "full"): "node_pressure_memory_stalled_seconds_total",
    ("irq", "full"): "node_pressure_irq_stalled_seconds_total",
}

RESOURCES = ("cpu", "io", "memory", "irq")


class PressureCollector(Collector):
    name = "pressure"
    default_enabled = True

    def files(self, options: Options) -> tuple[str, ...]:
        return tuple(f"/proc/pressure/{r}" for r in RESOURCES)

    def command(self, options: Options) -> str:
        return ""

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """``<resource> <some|full> total=<us>`` per line of each file."""
        out = []
        for path, content in files:
            resource = path.rsplit("/", 1)[-1]
            for line in content.splitlines():
                parts = line.split()
                if parts:
                    out.append(f"{resource} {parts[0]} {parts[4] if len(parts) > 4 else ''}\n")
        return "".join(out)

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        for line in stdout.splitlines():
            parts = line.split()
            if len(parts) != 3 or not parts[2].startswith("total="):
                if line.strip():
                    out.problems.append(f"invalid pressure line: {line[:80]!r}")
                continue
            metric = METRICS.get((parts[0], parts[1]))
            try:  # OverflowError: a number too large for a float
                value = int(parts[2][6:]) / 1000.0 / 1000.0
            except (ValueError, OverflowError):
                out.problems.append(f"invalid pressure total: {line[:80]!r}")
                continue
            if metric is not None:
                out.add(metric, value)
        return out
