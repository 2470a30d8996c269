"""Metric sweeps: one round trip per host over a channel kept open, parsed into samples.

A sweep of one host is one round trip: the enabled collectors' work, joined once into a plan
(``collectors.script.build_script``), goes to the host's sweep reader, a python3 process
kept on the host for the session (``orchestrator.ssh.reader``; no process started per
sweep), or, on a host without python3, as a POSIX sh script to the host's persistent shell;
the output (the same in both cases) is split and parsed; every sample gets the one
timestamp of that sweep, and ``job`` and ``instance`` when it is written
(``HostSweep.target_labels``). Per host and sweep it also emits ``up``,
``serverguard_scrape_duration_seconds`` and the collectors' success and duration.

``CollectionLoop`` runs sweeps forever: each host at a fixed offset inside the interval (a
hash of its name, so start times spread evenly and stay put across restarts; hosts start
in groups of about ``Settings.collect_batch``, the groups spread), never two
sweeps of one host at once, a failing host marked ``up 0`` while the others carry on (the
pool backs off its reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.base import Collector
from collectors.cpu import CpuCounterGuard
from collectors.host_code import render_spec
from collectors.host_reader import RAW_NOTE
from collectors.rendered import REPLY, RenderedError, samples_from_text, split_reply
from collectors.sample import Labels, Sample
from collectors.script import (
    CollectorReport,
    SweepScript,
    build_script,
    host_reader_source,
    run_parsers,
)
from inventory.targets import ConnectionTarget
from orchestrator.errors import SSHError
from orchestrator.runtime import tune_gc
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool

log = logging.getLogger(__name__)
_RAW_NOTE = RAW_NOTE.decode()  # a raw reply that starts with it says why (host_reader)


@dataclass(slots=True)
class HostSweep:
    """What one sweep of one host produced.

    ``collected`` are the samples without ``job``/``instance``; those two are in
    ``target_labels``, added when the samples are written (no merged copy of every sample).
    ``rendered``: when the host parsed its own output (``collectors.host_render``), the
    collectors' samples as checked rendered text (``collectors.rendered``), and
    ``collected`` holds only the sweep's own (``up``, the scrape duration).
    ``samples`` builds the merged samples, for callers that want them as objects.
    """

    host: str
    timestamp_ms: int
    up: bool
    duration_s: float
    collected: list[Sample]
    target_labels: Labels
    error: str | None = None
    reports: dict[str, CollectorReport] = field(default_factory=dict)
    # how the host ran it: "reader (python3), parsed on the host", "reader (python3)" (and
    # why not parsed there, when it said), or "sh script" with why not the reader
    via: str | None = None
    rendered: str = ""

    @property
    def samples(self) -> list[Sample]:
        """Every sample with ``job`` and ``instance`` merged into its sorted labels."""
        extra = self.target_labels
        own = samples_from_text(self.rendered) + self.collected if self.rendered \
            else self.collected
        return [s.with_sorted_extra(extra) if extra else s for s in own]

    @property
    def sample_count(self) -> int:
        return self.rendered.count("\n") + len(self.collected)

    @property
    def failed_collectors(self) -> list[str]:
        return [name for name, r in self.reports.items() if not r.success]

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "up": self.up,
            "timestamp_ms": self.timestamp_ms,
            "duration_s": round(self.duration_s, 6),
            "samples": self.sample_count,
            "failed_collectors": {
                name: r.problems for name, r in self.reports.items() if not r.success
            },
            # reported, success unaffected: a rejected textfile line, an unreadable mount
            "notes": {name: r.notes for name, r in self.reports.items() if r.notes},
            "via": self.via,
            "error": self.error,
        }


Sink = Callable[[HostSweep], Awaitable[None]]


class Sweeper:
    """Sweeps hosts with one fixed set of collectors (the script is built once)."""

    def __init__(
        self,
        pool: ConnectionPool,
        collectors: Sequence[Collector],
        options: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        timeout: float = 10.0,
        job: str = "node",
        python: str | None = "python3",
        parse_on_host: bool = True,
    ) -> None:
        """``python``: the host's interpreter for the sweep reader; ``None``: always the sh
        script (as on a host without python3). ``parse_on_host``: the reader parses its
        own output where it can (``collectors.host_render``)."""
        self.pool = pool
        self.python = python
        self._via_reader = f"reader ({python})"
        self._via_rendered = f"reader ({python}), parsed on the host"
        self.collectors = list(collectors)
        self.options = options
        self.timeout = timeout
        self.job = job
        render = render_spec(self.collectors, options) if parse_on_host and python else None
        self.script: SweepScript = build_script(self.collectors, options, render=render)
        # hosts whose rendered reply was refused: their reader gets ``raw_script``
        self._raw_only: set[str] = set()
        self._parsed_here: dict[str, str] = {}  # host -> why it does not parse (its reader)
        self._guards: dict[str, CpuCounterGuard] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.skipped = 0

    def busy(self, host: str) -> bool:
        lock = self._locks.get(host)
        return lock is not None and lock.locked()

    async def sweep(self, target: ConnectionTarget) -> HostSweep | None:
        """Sweep one host; ``None`` when its previous sweep is still running."""
        lock = self._locks.setdefault(target.name, asyncio.Lock())
        if lock.locked():
            self.skipped += 1
            return None
        async with lock:
            return await self._sweep(target)

    async def _sweep(self, target: ConnectionTarget) -> HostSweep:
        timestamp_ms = int(time.time() * 1000)
        started = time.perf_counter()
        error: str | None = None
        stdout = ""
        via: str | None = None
        try:
            result = None
            if self.python:
                plan = self.script
                if self._raw_only and target.name in self._raw_only:
                    plan = self.raw_script
                async with asyncio.timeout(self.timeout + 1):
                    result = await self.pool.run_with_reader(
                        target, host_reader_source(), plan.host_plan_id,
                        plan.host_plan, timeout=self.timeout, python=self.python,
                    )
                via = self._via_reader
            if result is None:  # no reader (no python3, or it just died): a budget of its own
                reader = self.pool.reader(target) if self.python else None
                why = reader.unavailable if reader is not None else None
                via = "sh script" + (f" (no sweep reader: {why})" if why else "")
                async with asyncio.timeout(self.timeout + 1):
                    result = await self.pool.run_in_session(
                        target, self.script, timeout=self.timeout,
                        buffered=self.script.bounded, keep=True,
                    )
            error = result.error
            stdout = result.stdout
        except SSHError as exc:
            error = str(exc)
        except TimeoutError:
            error = f"{target.name}: sweep took longer than {self.timeout:g}s"
        duration = time.perf_counter() - started
        labels = (("instance", target.name), ("job", self.job))
        new = tuple.__new__  # Sample's own __new__ is a Python function: twice the cost
        meta = [
            new(Sample, ("up", 0.0 if error else 1.0, ())),
            new(Sample, ("serverguard_scrape_duration_seconds", duration, ())),
        ]
        if error:
            return HostSweep(target.name, timestamp_ms, False, duration, meta, labels, error)
        if via is self._via_reader:
            if stdout.startswith(REPLY):
                return self._rendered(target.name, timestamp_ms, duration, stdout, meta, labels)
            if stdout.startswith(_RAW_NOTE):  # once per plan: why the host did not parse
                line, _, stdout = stdout.partition("\n")
                why = line[len(_RAW_NOTE):][:200]
                self._parsed_here[target.name] = why if why.isprintable() else repr(why)
                log.info("%s: sweeps are parsed here, not on the host: %s", target.name,
                         self._parsed_here[target.name])
            if self._parsed_here and target.name in self._parsed_here:
                via = f"{via}, parsed here: {self._parsed_here[target.name]}"
        guard = self._guards.setdefault(target.name, CpuCounterGuard())
        parsed = run_parsers(
            stdout,
            self.collectors,
            self.options,
            nonce=self.script.nonce,
            cpu_guard=guard,
            plan=self.script.plan,
        )
        # Collectors never set job/instance: the writer adds them (exposition_lines).
        collected = parsed.samples
        collected += parsed.collector_samples
        collected += meta
        return HostSweep(
            target.name, timestamp_ms, True, duration, collected, labels, None, parsed.reports,
            via,
        )

    def _rendered(
        self, host: str, timestamp_ms: int, duration: float, stdout: str, meta: list[Sample],
        labels: Labels,
    ) -> HostSweep:
        """A sweep the host parsed itself: its reply checked (``collectors.rendered``)."""
        try:
            got = split_reply(stdout, self.script.nonce)
            assert got is not None  # _sweep saw the reply's first line
            rows, text = got
            reports = {
                str(name): CollectorReport(
                    str(name), success is True,
                    float(took) if isinstance(took, (int, float)) else None,
                    rc if isinstance(rc, int) else None,
                    [str(p) for p in problems] if isinstance(problems, list) else [],
                    [str(n) for n in notes] if isinstance(notes, list) else [],
                )
                for name, success, took, rc, problems, notes in rows
            }
        except RenderedError as exc:
            # a reader that does not write what it should: parse on this side from now on
            self._raw_only.add(host)
            self._parsed_here[host] = "its parsed output was refused"
            log.warning("%s: the sweep reader's parsed output was refused (%s); its output "
                        "is parsed here from the next sweep on", host, exc)
            meta[0] = tuple.__new__(Sample, ("up", 0.0, ()))
            error = f"{host}: the sweep reader's parsed output was refused: {exc}"
            return HostSweep(host, timestamp_ms, False, duration, meta, labels, error)
        return HostSweep(host, timestamp_ms, True, duration, meta, labels, None, reports,
                         self._via_rendered, text)

    @functools.cached_property
    def raw_script(self) -> SweepScript:
        """The same sweep without parsing on the host (same nonce: same markers)."""
        return build_script(self.collectors, self.options, nonce=self.script.nonce)

    async def sweep_all(
        self, targets: Sequence[ConnectionTarget], *, concurrency: int = 200
    ) -> list[HostSweep]:
        """One sweep of every target (``collect --once``), in the targets' order."""
        slots = asyncio.Semaphore(concurrency)

        async def one(t: ConnectionTarget) -> HostSweep | None:
            async with slots:
                return await self.sweep(t)

        done = await asyncio.gather(*(one(t) for t in targets))
        return [d for d in done if d is not None]


MIN_TICK = 0.1  # seconds: start times of a loop are never closer together than this
DEFAULT_BATCH: int = Settings.model_fields["collect_batch"].default  # hosts starting together


def start_slots(hosts: int, interval: float, batch: int) -> int:
    """How many start times each interval has, so that about ``batch`` hosts share one.

    0 means every host its own start time (``batch`` 1). Never more than one start time per
    ``MIN_TICK``: a large fleet gets more hosts per start time instead.
    """
    if batch <= 1:
        return 0
    return max(1, min(-(-hosts // batch), int(interval / MIN_TICK)))


def offset_for(host: str, interval: float, slots: int = 0) -> float:
    """Where in each interval ``host`` is swept: stable, evenly spread (like hashmod).

    With ``slots`` (``start_slots``) the offset is the start of the host's slot: the
    interval is cut into that many equal parts and each host lands in one by its hash.
    """
    digest = hashlib.sha256(host.encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if slots > 0:
        return int(fraction * slots) / slots * interval
    return fraction * interval


class CollectionLoop:
    """Sweeps every target every ``interval`` seconds until stopped.

    ``jobs`` pairs each sweeper (one script) with the hosts it sweeps. Hosts start in groups
    of about ``batch`` (``start_slots``), the groups spread evenly over the interval: parsing
    a group's outputs back to back costs the orchestrator about a third less CPU per host
    than one host at a time, each after an idle gap (benchmarks/README.md). ``batch`` 1
    gives every host its own start time.
    """

    def __init__(
        self,
        jobs: Sequence[tuple[Sweeper, Sequence[ConnectionTarget]]],
        sink: Sink,
        *,
        interval: float = 15.0,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self.jobs = [(sweeper, list(targets)) for sweeper, targets in jobs]
        self.sink = sink
        self.interval = interval
        self.batch = batch
        self.sweeps = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._offsets: dict[str, float] = {}

    def start(self) -> None:
        # The long-lived objects (inventory, scripts, pool) are made: see orchestrator.runtime.
        tune_gc()
        epoch = time.monotonic()
        self._offsets = self.offsets()
        self._tasks = [
            asyncio.create_task(self._host_loop(sweeper, t, epoch), name=f"sweep:{t.name}")
            for sweeper, targets in self.jobs
            for t in targets
        ]

    def offsets(self) -> dict[str, float]:
        """Each host's start time inside the interval, in seconds (stable across restarts)."""
        names = [t.name for _, targets in self.jobs for t in targets]
        slots = start_slots(len(names), self.interval, self.batch)
        return {name: offset_for(name, self.interval, slots) for name in names}

    def describe(self) -> str:
        """``"in 10 groups of about 20"``: how the hosts' start times are laid out."""
        offsets = self._offsets or self.offsets()  # the ones start() uses, once started
        starts = len(set(offsets.values()))
        if starts >= len(offsets):
            return "each host at its own time"
        size = round(len(offsets) / starts)
        return f"in {starts} group{'s' if starts != 1 else ''} of about {size}"

    @property
    def skipped(self) -> int:
        return sum(sweeper.skipped for sweeper, _ in self.jobs)

    async def _host_loop(self, sweeper: Sweeper, target: ConnectionTarget, epoch: float) -> None:
        due = epoch + self._offsets[target.name]
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not sweeper.busy(target.name):
                task = asyncio.create_task(self._one(sweeper, target))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            else:
                sweeper.skipped += 1
            due += self.interval
            # A stalled event loop must not cause a burst of catch-up sweeps.
            while due < time.monotonic():
                due += self.interval

    async def _one(self, sweeper: Sweeper, target: ConnectionTarget) -> None:
        try:
            result = await sweeper.sweep(target)
            if result is not None:
                self.sweeps += 1
                await self.sink(result)
        except Exception:  # one host's bug must never stop the loop
            log.exception("sweep of %s failed unexpectedly", target.name)

    async def stop(self) -> None:
        for task in [*self._tasks, *self._inflight]:
            task.cancel()
        for task in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
