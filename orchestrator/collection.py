"""The metrics half of ``serverguard serve``: sweeps and probes into VictoriaMetrics.

It shares the service's SSH pool (so a command run and a sweep of the same host use one
connection) and, without ``vm_url``, starts the embedded ``victoria-metrics`` child::

    async with ConnectionPool(settings) as pool:
        service = CollectionService(settings, pool, inventory_sources)
        await service.start()      # loads the inventory, plans, starts the loops
        ...                        # service.url is where the series are
        await service.stop()

The inventory is read once at start; a changed inventory takes effect on restart.
"""

from __future__ import annotations

import asyncio
import logging

from inventory import Inventory, load_inventory
from orchestrator.metrics.backend import MetricsBackend
from orchestrator.probes.config import probes_from_inventory
from orchestrator.probes.schedule import ProbeLoop
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.sweep import CollectionLoop, Sweeper
from orchestrator.sweep_plan import plan_sweeps

log = logging.getLogger(__name__)


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

    @property
    def url(self) -> str:
        return self.backend.url

    async def start(self) -> None:
        inventory: Inventory = await asyncio.to_thread(load_inventory, self.sources)
        names = inventory.select(self.pattern)
        groups = plan_sweeps(inventory, names, default_policy=self.settings.host_key_policy)
        specs = probes_from_inventory(inventory)
        await self.backend.start()
        jobs = [
            (Sweeper(self.pool, g.collectors, g.options, timeout=self.settings.collect_timeout),
             g.targets)
            for g in groups
        ]
        interval = self.settings.collect_interval
        self.loop = CollectionLoop(jobs, self.backend.sink, interval=interval)
        self.probes = ProbeLoop(specs, self.pool, inventory, self.backend.sink, interval=interval)
        self.loop.start()
        self.probes.start()
        self.hosts = len(names)
        log.info(
            "collecting from %d hosts and %d probes every %gs into %s",
            len(names), len(specs), interval, self.url,
        )

    async def stop(self) -> None:
        if self.probes is not None:
            await self.probes.stop()
        if self.loop is not None:
            await self.loop.stop()
        await self.backend.close()
