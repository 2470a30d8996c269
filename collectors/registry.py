"""The collectors by name, with their default on/off and options.

Not provided: node_exporter's ``timex`` (``node_timex_*``). It comes from the adjtimex(2)
system call, which no file under /proc or /sys exposes; the only shell route is an
``adjtimex`` program (a busybox applet on some builds, a separate package on Debian and RHEL),
so a stock host cannot be read without installing something. Clock skew is still visible as
``node_time_seconds`` against the sweep's own timestamp.

Example::

    >>> reg = default_registry()
    >>> [c.name for c in reg.select(enable=["docker"], disable=["systemd"])][:3]
    ['cpu', 'stat', 'loadavg']
    >>> reg.resolve_options({"processes": {"top": 3}})["processes"]
    {'top': 3}
    >>> reg.select(enable=["nope"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    collectors.base.CollectorConfigError: unknown collector 'nope' (known: conntrack, cpu, ...)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from collectors.base import Collector, CollectorConfigError
from collectors.conntrack import ConntrackCollector
from collectors.cpu import CpuCollector
from collectors.diskstats import DiskstatsCollector
from collectors.docker import DockerCollector
from collectors.filefd import FilefdCollector
from collectors.filesystem import FilesystemCollector
from collectors.loadavg import LoadavgCollector
from collectors.meminfo import MeminfoCollector
from collectors.netclass import NetclassCollector
from collectors.netdev import NetdevCollector
from collectors.pressure import PressureCollector
from collectors.processes import ProcessesCollector
from collectors.stat import StatCollector
from collectors.systemd import SystemdCollector
from collectors.textfile import TextfileCollector
from collectors.time import TimeCollector
from collectors.uname import UnameCollector
from collectors.vmstat import VmstatCollector

# Order is script order: cpu and stat first (they share one read of /proc/stat).
BUILTIN: tuple[type[Collector], ...] = (
    CpuCollector,
    StatCollector,
    LoadavgCollector,
    MeminfoCollector,
    TimeCollector,
    UnameCollector,
    FilesystemCollector,
    DiskstatsCollector,
    NetdevCollector,
    NetclassCollector,
    VmstatCollector,
    FilefdCollector,
    ConntrackCollector,
    PressureCollector,
    ProcessesCollector,
    SystemdCollector,
    DockerCollector,
    TextfileCollector,
)


class Registry:
    """Collectors by name, in script order."""

    def __init__(self, collectors: Iterable[Collector] = ()) -> None:
        self._by_name: dict[str, Collector] = {}
        for c in collectors:
            self.register(c)

    def register(self, collector: Collector) -> None:
        if collector.name in self._by_name:
            raise CollectorConfigError(f"collector {collector.name!r} registered twice")
        self._by_name[collector.name] = collector

    def get(self, name: str) -> Collector:
        try:
            return self._by_name[name]
        except KeyError:
            raise CollectorConfigError(self._unknown(name)) from None

    def names(self) -> list[str]:
        return list(self._by_name)

    def __iter__(self) -> Iterator[Collector]:
        return iter(self._by_name.values())

    def defaults(self) -> list[Collector]:
        return [c for c in self if c.default_enabled]

    def select(
        self,
        *,
        enable: Iterable[str] = (),
        disable: Iterable[str] = (),
        only: Iterable[str] | None = None,
    ) -> list[Collector]:
        """The defaults plus ``enable`` minus ``disable``; or exactly ``only``. Script order."""
        enable, disable = set(enable), set(disable)
        wanted = set(only) if only is not None else set()
        for name in enable | disable | wanted:
            self.get(name)
        if only is not None:
            return [c for c in self if c.name in wanted]
        return [
            c for c in self if (c.default_enabled or c.name in enable) and c.name not in disable
        ]

    def resolve_options(
        self, options: Mapping[str, Mapping[str, Any]] | None
    ) -> dict[str, dict[str, Any]]:
        """Every collector's options, defaults filled in and validated (one-line errors)."""
        for name in options or {}:
            self.get(name)
        return {c.name: c.resolve_options((options or {}).get(c.name)) for c in self}

    def _unknown(self, name: str) -> str:
        known = ", ".join(sorted(self._by_name))
        return f"unknown collector {name!r} (known: {known})"


def default_registry() -> Registry:
    """A fresh registry holding every built-in collector."""
    return Registry(cls() for cls in BUILTIN)
