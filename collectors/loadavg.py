"""loadavg: ``node_load1``, ``node_load5``, ``node_load15`` from /proc/loadavg.

Read with the shell's ``read`` builtin: no process.

Example result for ``0.25 0.50 1.00 2/345 6789``::

    node_load1 0.25
    node_load5 0.5
    node_load15 1
"""

from __future__ import annotations

from collectors.base import Collector, Options, Samples, kernel_text


class LoadavgCollector(Collector):
    name = "loadavg"
    default_enabled = True

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/loadavg",)

    def command(self, options: Options) -> str:
        return ""

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        fields = stdout.split()
        try:
            values = [float(v) for v in fields[:3]]
        except ValueError:
            values = []
        if len(values) != 3:
            out.problems.append(f"unreadable /proc/loadavg: {stdout[:80]!r}")
            return out
        for name, value in zip(("node_load1", "node_load5", "node_load15"), values, strict=True):
            out.add(name, value)
        return out
