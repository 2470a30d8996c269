"""Probes on a schedule: every probe every ``interval`` seconds, results to a sink.

Each probe keeps its own schedule, as each host does: a slow probe (an HTTP server that
never answers, up to its timeout) delays only itself, never the others, and never runs
twice at once. At most ``CONCURRENCY`` probes run at the same moment. Each result is one
batch with one timestamp (like a host's sweep), handed to the same sink as the sweeps
(``MetricsBackend.sink``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from collectors.sample import Labels, Sample
from inventory import Inventory
from orchestrator.probes.result import ProbeFailure
from orchestrator.probes.runner import run_probes
from orchestrator.probes.spec import ProbeSpec
from orchestrator.ssh.pool import ConnectionPool

log = logging.getLogger(__name__)

CONCURRENCY = 20  # probes running at the same moment, as run_probes does for one round


@dataclass(slots=True)
class ProbeRound:
    """One round of every probe; ``samples`` carry all their labels already."""

    timestamp_ms: int
    samples: list[Sample]
    failures: list[tuple[ProbeSpec, ProbeFailure]]

    @property
    def collected(self) -> list[Sample]:
        return self.samples

    @property
    def target_labels(self) -> Labels:
        return ()

    @property
    def rendered(self) -> str:
        return ""


async def probe_round(
    specs: Sequence[ProbeSpec], pool: ConnectionPool, inventory: Inventory | None
) -> ProbeRound:
    timestamp_ms = int(time.time() * 1000)
    results = await run_probes(specs, pool, inventory)
    samples = [s for _, got, _ in results for s in got]
    failures = [(spec, failure) for spec, _, failure in results if failure is not None]
    return ProbeRound(timestamp_ms, samples, failures)


class ProbeLoop:
    def __init__(
        self,
        specs: Sequence[ProbeSpec],
        pool: ConnectionPool,
        inventory: Inventory | None,
        sink: Callable[[ProbeRound], Awaitable[None]],
        *,
        interval: float = 15.0,
    ) -> None:
        self.specs = list(specs)
        self.pool = pool
        self.inventory = inventory
        self.sink = sink
        self.interval = interval
        self.runs = 0  # probe results handed to the sink
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.specs:
            self._task = asyncio.create_task(self._run(), name="probes")

    async def _run(self) -> None:
        slots = asyncio.Semaphore(CONCURRENCY)
        await asyncio.gather(*(self._one_probe(spec, slots) for spec in self.specs))

    async def _one_probe(self, spec: ProbeSpec, slots: asyncio.Semaphore) -> None:
        due = time.monotonic()
        while True:
            try:
                async with slots:
                    result = await probe_round([spec], self.pool, self.inventory)
                await self.sink(result)
                self.runs += 1
            except Exception:  # a bug in one probe must not stop it, nor the others
                log.exception("probe %s failed unexpectedly", spec.name)
            due += self.interval
            while due < time.monotonic():
                due += self.interval
            await asyncio.sleep(due - time.monotonic())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
