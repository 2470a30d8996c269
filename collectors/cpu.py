"""cpu: per-CPU time from /proc/stat, as node_exporter's cpu collector.

``node_cpu_seconds_total{cpu,mode}`` for the 8 modes (user nice system idle iowait irq softirq
steal) and ``node_cpu_guest_seconds_total{cpu,mode=user|nice}``; ticks are USER_HZ (always 100
on Linux's user interface) and become seconds. Offline CPUs have no ``cpuN`` row and simply
yield no series. Columns an old kernel lacks count as 0, as in node_exporter.

Example result for the row ``cpu0 2945 0 873 48175 68 0 50 51 0 0``::

    node_cpu_seconds_total{cpu="0",mode="user"} 29.45
    node_cpu_seconds_total{cpu="0",mode="idle"} 481.75
    node_cpu_guest_seconds_total{cpu="0",mode="nice"} 0

``CpuCounterGuard`` is the per-host state the sweep keeps: within one boot these counters
never go backwards (node_exporter's ``updateCPUStats`` rule).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

from collectors.base import Collector, Options, Samples, kernel_text
from collectors.sample import Labels, Sample

USER_HZ = 100.0
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
GUEST_MODES = ("user", "nice")
CPU_METRIC = "node_cpu_seconds_total"
GUEST_METRIC = "node_cpu_guest_seconds_total"
# node_exporter: an idle counter jumping back this much means a hot-plugged CPU: start over.
JUMP_BACK_SECONDS = 3.0


def boot_time_from_stat(text: str) -> float | None:
    """The ``btime`` of a /proc/stat text, or ``None``."""
    at = text.find("btime ")
    while at > 0 and text[at - 1] != "\n":  # only at the start of a line
        at = text.find("btime ", at + 1)
    if at == -1:
        return None
    parts = text[at : text.find("\n", at) % (len(text) + 1)].split()
    try:
        return float(parts[1])
    except (IndexError, ValueError):
        return None


_METRICS = (CPU_METRIC,) * len(MODES) + (GUEST_METRIC,) * len(GUEST_MODES)


@functools.lru_cache(maxsize=1024)
def _labels(cpu: str) -> tuple[Labels, ...]:
    """The sorted label pairs of cpu ``cpu``'s 8 modes, then of its 2 guest modes."""
    return tuple((("cpu", cpu), ("mode", mode)) for mode in (*MODES, *GUEST_MODES))


class CpuCollector(Collector):
    name = "cpu"
    default_enabled = True
    processes = "0 (/proc/stat is read with the other collectors' files)"

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/stat",)

    def command(self, options: Options) -> str:
        return ""

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        for line in stdout.splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            fields = line.split()
            cpu = fields[0][3:]
            try:  # OverflowError: a number too large for a float
                seconds = [int(v) / USER_HZ for v in fields[1:11]]
            except (ValueError, OverflowError):
                out.problems.append(f"unreadable /proc/stat row: {line[:80]!r}")
                continue
            if not (cpu.isdigit() and cpu.isascii()) or len(seconds) < 4:
                out.problems.append(f"unreadable /proc/stat row: {line[:80]!r}")
                continue
            seconds += [0.0] * (10 - len(seconds))
            labels = _labels(cpu.lstrip("0") or "0")  # str(int(cpu)), for any length
            # Sample(metric, seconds, labels) per column, built by map/zip without a bytecode
            # loop and without Sample's Python-level __new__
            out += map(tuple.__new__, repeat(Sample), zip(_METRICS, seconds, labels, strict=True))
        if not out and not out.problems:
            out.problems.append("no cpuN rows in /proc/stat")
        return out


@dataclass
class CpuCounterGuard:
    """Keeps a host's CPU counters from going backwards within one boot.

    node_exporter's rule, per CPU: if ``idle`` fell by ``JUMP_BACK_SECONDS`` or more the CPU
    was hot-plugged, so its stored values start over; otherwise any value lower than the one
    stored keeps the stored one. CPUs that went offline are forgotten. A changed boot time
    (more than a second apart: ``btime`` wobbles with clock steps) forgets everything.

    Example::

        >>> g = CpuCounterGuard()
        >>> s = lambda v: [Sample.of(CPU_METRIC, v, cpu="0", mode="iowait")]
        >>> g.apply(s(5.0), boot_time=100)[0].value, g.apply(s(4.99), boot_time=100)[0].value
        (5.0, 5.0)
        >>> g.apply(s(1.0), boot_time=999)[0].value  # rebooted
        1.0
    """

    jump_back_seconds: float = JUMP_BACK_SECONDS
    boot_time: float | None = None
    # the last value kept of each (metric, labels) of the two CPU metrics
    values: dict[tuple[str, Labels], float] = field(default_factory=dict)

    @property
    def cpus(self) -> set[str]:
        """The CPUs whose values are kept."""
        return {_cpu_and_mode(labels)[0] for _, labels in self.values}

    def apply(self, samples: Sequence[Sample], *, boot_time: float | None) -> list[Sample]:
        # Runs for every host on every sweep: one dict lookup per sample, no dict per CPU.
        if boot_time is not None:
            if self.boot_time is not None and abs(boot_time - self.boot_time) > 1.0:
                self.values.clear()
            self.boot_time = boot_time
        old = self.values
        restarted: set[str] = set()  # hot-plugged CPUs: their kept values are void
        for name, value, labels in samples:
            if name == CPU_METRIC:
                cpu, mode = _cpu_and_mode(labels)
                if mode == "idle":
                    before = old.get((name, labels))
                    if before is not None and before - value >= self.jump_back_seconds:
                        restarted.add(cpu)
        new: dict[tuple[str, Labels], float] = {}
        out = list(samples)
        for i, (name, value, labels) in enumerate(out):
            if name != CPU_METRIC and name != GUEST_METRIC:
                continue
            key = (name, labels)
            key = _KEYS.get(key) or _key(key)  # one object for every host's same key
            before = old.get(key)
            if (
                before is not None
                and before > value
                and not (restarted and _cpu_and_mode(labels)[0] in restarted)
            ):
                value = before
                out[i] = tuple.__new__(Sample, (name, value, labels))
            new[key] = max(value, new.get(key, value))
        self.values = new  # CPUs that went offline are forgotten
        return out


_KEYS: dict[tuple[str, Labels], tuple[str, Labels]] = {}


def _key(key: tuple[str, Labels]) -> tuple[str, Labels]:
    if len(_KEYS) >= 65_536:
        _KEYS.clear()
    return _KEYS.setdefault(key, key)


def _cpu_and_mode(labels: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    if len(labels) == 2 and labels[0][0] == "cpu" and labels[1][0] == "mode":
        return labels[0][1], labels[1][1]  # what parse makes (sorted labels)
    found = dict(labels)
    return found.get("cpu", ""), found.get("mode", "")
