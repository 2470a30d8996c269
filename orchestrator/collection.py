"""The metrics half of ``serverguard serve``: sweeps and probes into VictoriaMetrics.

It shares the service's SSH pool (so a command run and a sweep of the same host use one
connection) and, without ``vm_url``, starts the embedded ``victoria-metrics`` child::

    async with ConnectionPool(settings) as pool:
        service = CollectionService(settings, pool, inventory_sources)
        await service.start()      # loads the inventory, plans, starts the loops
        ...                        # service.url is where the series are
        await service.stop()

The inventory is read at start (``check_collection`` does the same reading and planning
without starting anything: ``serverguard serve`` calls it before its server starts, so a
bad inventory is one line of error, not a failed startup). ``watch(get_inventory)`` then
follows its changes: the service's ``InventorySource`` hands over a new ``Inventory`` when
the files change, the sweeps and probes are planned again and, when the plan differs (hosts
added or removed, other collectors, options, probes or connection settings), the loops are
swapped. An inventory that cannot be read or planned is logged and the running loops go on
with the last good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inventory import Inventory, load_inventory
from orchestrator.errors import ServerGuardError
from orchestrator.metrics.backend import MetricsBackend
from orchestrator.probes.config import probes_from_inventory
from orchestrator.probes.schedule import ProbeLoop
from orchestrator.probes.spec import ProbeSpec
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.sweep import CollectionLoop, Sweeper
from orchestrator.sweep_plan import SweepGroup, plan_sweeps

log = logging.getLogger(__name__)
WATCH_INTERVAL = 5.0  # seconds between looks at the inventory (its files' timestamps)


@dataclass
class _Plan:
    names: Sequence[str]
    groups: list[SweepGroup]
    specs: list[ProbeSpec]
    signature: str  # equal signatures: the same loops


def plan_collection(inventory: Inventory, settings: Settings, pattern: str = "all") -> _Plan:
    """The sweeps and probes ``inventory`` asks for; raises (``ServerGuardError``) for an
    inventory the loops cannot run from."""
    names = inventory.select(pattern)
    groups = plan_sweeps(inventory, names, default_policy=settings.host_key_policy)
    specs = probes_from_inventory(inventory, hosts=names)  # the selected hosts' probes
    signature = repr((
        [([c.name for c in g.collectors], sorted(g.options.items()), g.targets, g.python)
         for g in groups],
        specs,
    ))
    return _Plan(names, groups, specs, signature)


def check_collection(sources: Sequence[str], settings: Settings,
                     pattern: str = "all") -> Inventory:
    """Read the inventory at ``sources`` and plan its collection, starting nothing: the
    inventory :meth:`CollectionService.start` can start from. Raises ``ServerGuardError``
    (one line: the file, host or key at fault) when it cannot be read or planned."""
    inventory = load_inventory(list(sources))
    plan_collection(inventory, settings, pattern)
    return inventory


class CollectionService:
    def __init__(
        self,
        settings: Settings,
        pool: ConnectionPool,
        inventory_sources: list[str],
        *,
        vm_url: str | None = None,
        pattern: str = "all",
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.sources = inventory_sources
        self.pattern = pattern
        self.backend = MetricsBackend(settings, vm_url=vm_url)
        self.loop: CollectionLoop | None = None
        self.probes: ProbeLoop | None = None
        self.hosts = 0
        self.inventory: Inventory | None = None
        self.signature = ""
        self.reloads = 0  # times a changed inventory changed the loops
        self._watcher: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.backend.url

    async def start(self, inventory: Inventory | None = None) -> None:
        if inventory is None:
            inventory = await asyncio.to_thread(load_inventory, self.sources)
        plan = self._plan(inventory)
        await self.backend.start()
        self._start_loops(inventory, plan)

    def _plan(self, inventory: Inventory) -> _Plan:
        """Raises (``ServerGuardError``) for an inventory the loops cannot run from."""
        return plan_collection(inventory, self.settings, self.pattern)

    def _start_loops(self, inventory: Inventory, plan: _Plan) -> None:
        jobs = [
            (Sweeper(self.pool, g.collectors, g.options, timeout=self.settings.collect_timeout,
                     python=g.python, parse_on_host=g.parse_on_host),
             g.targets)
            for g in plan.groups
        ]
        interval = self.settings.collect_interval
        self.loop = CollectionLoop(jobs, self.backend.sink, interval=interval,
                                   batch=self.settings.collect_batch)
        self.probes = ProbeLoop(plan.specs, self.pool, inventory, self.backend.sink,
                                interval=interval)
        self.loop.start()
        self.probes.start()
        self.inventory, self.signature, self.hosts = inventory, plan.signature, len(plan.names)
        log.info(
            "collecting from %d hosts (%s) and %d probes every %gs into %s",
            len(plan.names), self.loop.describe(), len(plan.specs), interval,
            self.backend.shown_url,
        )

    async def apply(self, inventory: Inventory) -> bool:
        """Follow ``inventory`` (a new load of the files); True when the loops changed.
        A plan that fails raises and leaves the running loops alone."""
        if inventory is self.inventory:
            return False
        plan = await asyncio.to_thread(self._plan, inventory)
        if plan.signature == self.signature:
            self.inventory = inventory
            return False
        await self._stop_loops()
        self._start_loops(inventory, plan)
        self.reloads += 1
        return True

    def watch(self, get_inventory: Callable[[], Inventory | None],
              every: float | None = None) -> None:
        """Check ``get_inventory`` (blocking: run in a thread) every ``every`` seconds
        (default ``WATCH_INTERVAL``) and :meth:`apply` what it returns."""
        every = WATCH_INTERVAL if every is None else every
        self._watcher = asyncio.create_task(self._watch(get_inventory, every),
                                            name="inventory-watch")

    async def _watch(self, get_inventory: Callable[[], Inventory | None], every: float) -> None:
        last_error = None
        while True:
            await asyncio.sleep(every)
            try:
                inventory = await asyncio.to_thread(get_inventory)
                if inventory is not None:
                    await self.apply(inventory)
                last_error = None
            except Exception as exc:  # whatever it is, the watcher must not die of it
                text = str(exc) if isinstance(exc, ServerGuardError) else (
                    f"{type(exc).__name__}: {exc}")
                if text != last_error:  # once per distinct problem, not every few seconds
                    log.warning("inventory changed but cannot be collected from; still "
                                "collecting with the previous one: %s", text)
                last_error = text

    async def _stop_loops(self) -> None:
        if self.probes is not None:
            await self.probes.stop()
        if self.loop is not None:
            await self.loop.stop()

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._stop_loops()
        await self.backend.close()
