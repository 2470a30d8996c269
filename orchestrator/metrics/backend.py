"""Where sweeps go: VictoriaMetrics at a URL, or an embedded child under the state dir.

``MetricsBackend`` owns the spool, the writer and (without a URL) the embedded
``victoria-metrics`` child; ``serve`` and ``collect`` both use it::

    async with MetricsBackend(settings, vm_url=None) as backend:
        await backend.sink(host_sweep)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

from prometheus_client import CollectorRegistry

from collectors.sample import Labels, Sample
from orchestrator.metrics.endpoint import VMEndpoint
from orchestrator.metrics.spool import Spool
from orchestrator.metrics.vm_process import EmbeddedVictoriaMetrics
from orchestrator.metrics.writer import VMWriter
from orchestrator.settings import Settings


class HostBatch(Protocol):
    """A host's sweep or a probe round: samples sharing one timestamp, plus labels that every
    one of them gets when written (a sweep's ``job``/``instance``; none for probes)."""

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def collected(self) -> Sequence[Sample]: ...

    @property
    def target_labels(self) -> Labels: ...

    @property
    def rendered(self) -> str:
        """Samples the host rendered itself (``collectors.rendered``), checked; or ``""``."""
        ...


class MetricsBackend:
    def __init__(
        self,
        settings: Settings,
        *,
        vm_url: str | None = None,
        registry: CollectorRegistry | None = None,
        flush_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.vm_url = vm_url or settings.vm_url
        self.registry = registry
        self.flush_interval = flush_interval
        self.embedded: EmbeddedVictoriaMetrics | None = None
        self.spool: Spool | None = None
        self.writer: VMWriter | None = None

    @property
    def url(self) -> str:
        if self.writer is None:
            raise RuntimeError("backend not started")
        return self.writer.url

    @property
    def shown_url(self) -> str:
        """The URL for logs and messages: no password, no token (``metrics.endpoint``)."""
        if self.writer is None:
            raise RuntimeError("backend not started")
        return self.writer.shown_url

    async def start(self) -> None:
        url = self.vm_url
        if url:
            VMEndpoint.parse(url)  # a URL that cannot work: one line, before anything starts
        else:
            self.embedded = EmbeddedVictoriaMetrics(
                self.settings.state_dir / "victoria-metrics", port=self.settings.vm_port
            )
            await asyncio.to_thread(self.embedded.start)
            url = self.embedded.url
        self.spool = Spool(self.settings.state_dir / "spool", max_bytes=self.settings.spool_bytes)
        self.writer = VMWriter(
            url, spool=self.spool, registry=self.registry, flush_interval=self.flush_interval
        )
        await self.writer.start()

    async def sink(self, batch: HostBatch) -> None:
        assert self.writer is not None
        if batch.rendered:
            await self.writer.write_rendered(batch.rendered, batch.timestamp_ms,
                                             batch.target_labels)
        await self.writer.write_at(batch.collected, batch.timestamp_ms, batch.target_labels)

    async def close(self) -> None:
        if self.writer is not None:
            await self.writer.close()
        if self.spool is not None:
            self.spool.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)

    async def __aenter__(self) -> MetricsBackend:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
