"""VMWriter: batched, gzip'd writes to VictoriaMetrics that lose nothing when it is away.

Data path::

    write() ──► pending (memory) ──flush──► POST /api/v1/import/prometheus ──► VM
                      │                          │ no answer, 5xx, 429, other 4xx
                      │ overflow                 ▼ (after retries with backoff + jitter)
                      └───────────────────────► Spool (disk) ──replay, oldest first──► VM

- A *batch* is a list of ``(Sample, timestamp_ms)``; the sweep writes one batch per host per
  sweep with one timestamp and the host's ``job``/``instance`` (:meth:`VMWriter.write_at`).
  Samples are rendered to Prometheus text lines as they are queued, each with its own
  timestamp, so spooled data is replayed with its *original* time.
- Pending samples are sent every ``flush_interval`` seconds or as soon as
  ``batch_max_samples`` are waiting; each POST carries at most ``batch_max_samples``.
- When a POST fails for a reason that may pass (see :mod:`orchestrator.metrics.transport`)
  it is retried ``retries`` times with exponential backoff and jitter, then the batch goes to
  the spool and the writer marks VictoriaMetrics down: further batches go straight to the
  spool (no timeout per batch) until the replay task sees ``/health`` answer again.
- A background replay task sends spooled records oldest first (several records per POST,
  gzip members concatenated) while new data flows direct, and acks them in the spool only
  after VictoriaMetrics answered 2xx: delivery is at-least-once.
- A batch VictoriaMetrics calls malformed (400/422) is dropped and counted; replaying it
  would fail forever.
- Memory is bounded: when more than ``max_pending_samples`` wait, ``write`` waits for the
  flusher (backpressure while VictoriaMetrics is merely slower than the sweep); when the
  flusher makes no progress for ``timeout`` seconds (VictoriaMetrics hangs), the oldest
  pending samples go to the spool instead, so a sweep is never stalled for longer.
- ``await writer.close()`` sends what is pending (to VictoriaMetrics or the spool), stops the
  replay task and leaves the rest of the spool for the next process. The caller owns (and
  closes) the spool.

Durability: a sample is safe once VictoriaMetrics answered 2xx or the spool fsync'd it; what
waits in memory (at most ``flush_interval`` seconds' worth) is lost if the process is
killed.

Example::

    registry = CollectorRegistry()
    with Spool(state_dir / "spool") as spool:
        async with VMWriter("http://127.0.0.1:8428", spool=spool, registry=registry) as w:
            await w.write_at([Sample.of("up", 1, job="node", instance="web1")], now_ms)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

import requests
from prometheus_client import CollectorRegistry

from collectors.rendered import finish_text
from collectors.sample import Labels, Sample, exposition_lines
from orchestrator.errors import MetricsError
from orchestrator.metrics.endpoint import VMEndpoint
from orchestrator.metrics.selfmetrics import WriterMetrics
from orchestrator.metrics.spool import Spool, SpoolRecord
from orchestrator.metrics.transport import (
    GZIP_LEVEL,
    Backoff,
    PostResult,
    Verdict,
    encode_lines,
    post_import,
    probe_health,
    render,
    split_body,
)

log = logging.getLogger(__name__)

Batch = Iterable[tuple[Sample, int]]


@dataclass(slots=True)
class _Outcome:
    delivered: int = 0
    rejected: int = 0
    failure: PostResult | None = None


class VMWriter:
    """Asynchronous VictoriaMetrics writer with a disk spool; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        spool: Spool,
        batch_max_samples: int = 10_000,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        registry: CollectorRegistry | None = None,
        retries: int = 2,
        backoff_base: float = 0.25,
        backoff_max: float = 10.0,
        max_pending_samples: int | None = None,
        replay_batch_bytes: int = 4 << 20,
        gzip_level: int = GZIP_LEVEL,
    ) -> None:
        if batch_max_samples < 1 or flush_interval <= 0 or timeout <= 0 or retries < 0:
            raise ValueError("batch_max_samples, flush_interval and timeout must be positive")
        self.endpoint = VMEndpoint.parse(url)  # ConfigError for a URL that cannot work
        self.url = self.endpoint.url
        self.shown_url = self.endpoint.shown  # for logs and messages: no password, no token
        self.spool = spool
        self.batch_max_samples = batch_max_samples
        self.flush_interval = flush_interval
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_pending_samples = max_pending_samples or 20 * batch_max_samples
        self.replay_batch_bytes = replay_batch_bytes
        self.gzip_level = gzip_level
        self.metrics = WriterMetrics(registry)
        self.metrics.baseline(spool.stats())
        self.metrics.spool_bytes.set_function(lambda: spool.size_bytes)
        self._pending: list[str] = []  # Prometheus text lines, one per sample
        self._up = True
        self._started = False
        self._closed = False
        self._closing = False
        self._wake = asyncio.Event()
        self._spooled = asyncio.Event()
        self._stopping = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._direct_session = requests.Session()
        self._replay_session = requests.Session()

    # -- public API -------------------------------------------------------------------------

    @property
    def vm_up(self) -> bool:
        """False while the writer spools because VictoriaMetrics did not answer."""
        return self._up

    @property
    def pending_samples(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        """Start the flush and replay tasks (``write`` and ``async with`` do it for you)."""
        if self._started:
            return
        if self._closed:
            raise MetricsError("the VictoriaMetrics writer is closed")
        self._started = True
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="vm-writer-flush"),
            asyncio.create_task(self._replay_loop(), name="vm-writer-replay"),
        ]

    async def write(self, batch: Batch) -> None:
        """Queue ``(sample, timestamp_ms)`` pairs.

        Returns at once unless more than ``max_pending_samples`` wait: then it waits for the
        flusher to take some (at most ``timeout`` seconds, after which the oldest pending
        samples go to the spool instead) -- a slow VictoriaMetrics slows the caller down, a
        hanging one does not stop it.
        """
        await self._queue(render(batch))

    async def write_at(
        self, samples: Iterable[Sample], timestamp_ms: int, extra: Labels = ()
    ) -> None:
        """Queue samples sharing one timestamp (one host, one sweep), each also labelled with
        ``extra`` (the host's ``job`` and ``instance``, not in the samples' own labels)."""
        await self._queue(exposition_lines(samples, timestamp_ms, extra))

    async def write_rendered(self, text: str, timestamp_ms: int, extra: Labels = ()) -> None:
        """Queue samples a host rendered itself (``collectors.rendered``; checked by the
        sweep), with ``extra`` and ``timestamp_ms`` added as ``write_at`` adds them."""
        await self._queue(finish_text(text, timestamp_ms, extra))

    async def _queue(self, lines: list[str]) -> None:
        if self._closed:
            raise MetricsError("the VictoriaMetrics writer is closed")
        await self.start()
        self._pending += lines
        if len(self._pending) >= self.batch_max_samples:
            self._wake.set()
        while len(self._pending) > self.max_pending_samples:
            # Backpressure while the flusher makes progress; if it makes none for
            # ``timeout`` seconds (VictoriaMetrics hangs), spill the oldest to the spool.
            self._progress.clear()
            self._wake.set()
            try:
                await asyncio.wait_for(self._progress.wait(), self.timeout)
                continue
            except TimeoutError:
                pass
            if len(self._pending) > self.max_pending_samples:
                chunk = self._take(self.batch_max_samples)
                body, n = await asyncio.to_thread(self._encode, chunk)
                await self._spool_append(body, n)

    async def flush(self) -> None:
        """Send everything pending now; returns when it is in VictoriaMetrics or the spool."""
        await self.start()
        await self._drain()

    async def close(self) -> None:
        """Flush pending samples, stop the background tasks; the spool keeps the rest."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._closing = True
            self._wake.set()
            await self._tasks[0]
            self._stopping.set()
            self._spooled.set()
            await self._tasks[1]
        self._direct_session.close()
        self._replay_session.close()
        self.metrics.sync_spool(await asyncio.to_thread(self.spool.stats))

    async def __aenter__(self) -> VMWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- flushing ---------------------------------------------------------------------------

    def _take(self, n: int) -> list[str]:
        chunk = self._pending[:n]
        del self._pending[:n]
        return chunk

    def _encode(self, chunk: Sequence[str]) -> tuple[bytes, int]:
        return encode_lines(chunk, self.gzip_level)

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            await self._drain()
            if self._closing:
                return

    async def _drain(self) -> None:
        async with self._flush_lock:
            while self._pending:
                chunk = self._take(self.batch_max_samples)
                self._progress.set()
                try:
                    await self._dispatch(chunk)
                except Exception:
                    log.exception("metrics: dropping a batch of %d samples", len(chunk))
                    self.metrics.dropped.labels(reason="error").inc(len(chunk))

    async def _dispatch(self, chunk: Sequence[str]) -> None:
        body, n = await asyncio.to_thread(self._encode, chunk)
        if self._up and await self._send_direct(body, n):
            return
        await self._spool_append(body, n)

    async def _send_direct(self, body: bytes, n: int) -> bool:
        """True when VictoriaMetrics took the batch (or rejected it for good)."""
        backoff = Backoff(self.backoff_base, self.backoff_max)
        failure: PostResult | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(backoff.next())
            out = await self._send(body, n, self._direct_session)
            self.metrics.written.inc(out.delivered)
            if out.failure is None:
                return True
            failure = out.failure
        assert failure is not None
        self._mark_down(failure)
        return False

    async def _spool_append(self, body: bytes, n: int) -> None:
        try:
            await asyncio.to_thread(self.spool.append, body, n)
        except (OSError, MetricsError, ValueError) as exc:
            log.error("metrics: cannot spool %d samples, dropping them: %s", n, exc)
            self.metrics.dropped.labels(reason="spool_error").inc(n)
            return
        self.metrics.spooled.inc(n)
        self.metrics.sync_spool(await asyncio.to_thread(self.spool.stats))
        self._spooled.set()

    async def _send(
        self, body: bytes, n: int, session: requests.Session, *, count_rejects: bool = True
    ) -> _Outcome:
        """One POST (more when VictoriaMetrics answers 413 and the batch is split)."""
        result = await asyncio.to_thread(post_import, session, self.url, body, self.timeout)
        self.metrics.latency.observe(result.seconds)
        verdict = result.verdict
        if verdict is Verdict.OK:
            return _Outcome(delivered=n)
        self.metrics.errors.labels(reason=result.reason).inc()
        if verdict is Verdict.SPLIT and n > 1:
            total = _Outcome()
            for half, count in await asyncio.to_thread(split_body, body, self.gzip_level):
                out = await self._send(half, count, session, count_rejects=count_rejects)
                total.delivered += out.delivered
                total.rejected += out.rejected
                if out.failure is not None:
                    total.failure = out.failure
                    break
            return total
        if verdict in (Verdict.REJECT, Verdict.SPLIT):
            if count_rejects:
                log.error(
                    "VictoriaMetrics at %s rejected %d samples, dropping them: %s",
                    self.shown_url,
                    n,
                    self.endpoint.redact(result.detail),
                )
                self.metrics.dropped.labels(reason="rejected").inc(n)
            return _Outcome(rejected=n)
        return _Outcome(failure=result)

    def _mark_down(self, failure: PostResult) -> None:
        if self._up:
            log.warning(
                "VictoriaMetrics at %s: %s (%s): spooling to %s until it answers",
                self.shown_url,
                failure.reason,
                self.endpoint.redact(failure.detail),
                self.spool.directory,
            )
        self._up = False
        self.metrics.up.set(0)
        self._spooled.set()  # the replay task probes /health

    def _mark_up(self) -> None:
        if not self._up:
            log.info("VictoriaMetrics at %s answers again: replaying the spool", self.shown_url)
        self._up = True
        self.metrics.up.set(1)

    # -- replay -----------------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _replay_loop(self) -> None:
        backoff = Backoff(self.backoff_base, self.backoff_max)
        while not self._stopping.is_set():
            try:
                if not await self._replay_once(backoff):
                    await self._sleep(backoff.next())
            except Exception:
                log.exception("metrics: replay from %s failed", self.spool.directory)
                await self._sleep(backoff.next())

    async def _replay_once(self, backoff: Backoff) -> bool:
        """One step of the replay task; False asks for a backoff pause."""
        self._spooled.clear()
        if await asyncio.to_thread(self.spool.is_empty):
            await self._spooled.wait()
            return True
        if not self._up:
            probe_timeout = min(self.timeout, 5.0)
            healthy = await asyncio.to_thread(
                probe_health, self._replay_session, self.url, probe_timeout
            )
            if not healthy:
                return False
            self._mark_up()
            backoff.reset()
        records = await asyncio.to_thread(self.spool.read, 1000, self.replay_batch_bytes)
        self.metrics.sync_spool(await asyncio.to_thread(self.spool.stats))
        if not records:
            return True  # a torn record was skipped; go on
        out = await self._replay(records)
        if out.failure is not None:
            self._mark_down(out.failure)
            return False
        backoff.reset()
        return True

    async def _replay(self, records: Sequence[SpoolRecord]) -> _Outcome:
        body = b"".join(r.payload for r in records)
        n = sum(r.samples for r in records)
        out = await self._send(body, n, self._replay_session, count_rejects=len(records) == 1)
        if out.rejected and len(records) > 1:
            # One bad record must not cost the others: send them one at a time.
            out = _Outcome()
            for record in records:
                one = await self._send(record.payload, record.samples, self._replay_session)
                out.delivered += one.delivered
                out.rejected += one.rejected
                if one.failure is not None:
                    out.failure = one.failure
                    break
        self.metrics.replayed.inc(out.delivered)
        if out.failure is None:
            await asyncio.to_thread(self.spool.ack, records)
            self.metrics.sync_spool(await asyncio.to_thread(self.spool.stats))
            log.debug("metrics: replayed %d samples from the spool", n)
        return out
