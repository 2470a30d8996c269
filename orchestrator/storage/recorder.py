"""Recorded runs: command runs executed in the background, every step written down.

The :class:`RunRecorder` lives in the service's event loop with the one shared
:class:`~orchestrator.ssh.pool.ConnectionPool`. It starts a run as an asyncio task
(``fan_out`` underneath), turns output chunks into run events, writes them in small batches
(every ``FLUSH_INTERVAL`` or ``FLUSH_BYTES``, whichever comes first; a batch is one
transaction, written from a worker thread so the loop never waits on the database), then
hands the stored events (with their ids) to live followers. A follower therefore never sees
an event that is not in the database, and replay-then-follow needs no de-duplication beyond
"skip ids already sent".

Cancel kills the remote processes (``exec_command`` sends SIGKILL to the remote process
group when its task is cancelled), marks unfinished hosts ``canceled`` and ends the run
``canceled``.

Run lifecycle (as ansible-runner): pending → running → successful | failed | timeout |
canceled.

:func:`start_command_run` is the one entry point for starting a command run: it checks the
command policy, resolves the pattern within the caller's scope, records the run and submits
it. Other kinds of run (playbooks, :mod:`orchestrator.playbook_runs`) hand the recorder a
:class:`RecordedJob` (:meth:`RunRecorder.submit_job`) that reports through a
:class:`RunSink`; they get the same batching, live followers, cancel and shutdown.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlmodel import Session

from inventory import ConnectionTarget, Inventory
from orchestrator import audit
from orchestrator.auth.principal import HostScope, Principal
from orchestrator.errors import (
    ConflictError,
    InventoryError,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    ValidationFailed,
)
from orchestrator.executor import fan_out
from orchestrator.policy import CommandPolicy
from orchestrator.ssh.exec import ExecResult
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.storage import runs as run_store
from orchestrator.storage.db import Database
from orchestrator.storage.models import (
    AuditEntryCreate,
    HostStatus,
    Role,
    Run,
    RunCreate,
    RunEvent,
    RunEventKind,
    RunStatus,
)
from orchestrator.storage.settings import ServiceSettings
from orchestrator.storage.types import utcnow

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.1  # seconds between event batches
FLUSH_BYTES = 256 * 1024  # ... or sooner when this much output is waiting
FOLLOWER_QUEUE = 10_000  # batches a slow follower may lag before it is dropped


def to_text(data: bytes) -> str:
    """Output as storable text: invalid UTF-8 as ``\\xNN``, NUL (refused by PostgreSQL)
    likewise."""
    return data.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


def host_status(result: ExecResult) -> HostStatus:
    if result.ok:
        return HostStatus.OK
    if result.extra.get("unreachable"):
        return HostStatus.UNREACHABLE
    if result.rc is None and result.signal is None and (result.error or "").startswith(
        "command timed out"
    ):
        return HostStatus.TIMEOUT
    return HostStatus.FAILED


def result_row(result: ExecResult) -> dict[str, Any]:
    """The columns of ``run_host_results`` for a finished host."""
    return {
        "status": host_status(result).value,
        "rc": result.rc,
        "stdout": to_text(result.stdout_bytes),
        "stderr": to_text(result.stderr_bytes),
        "duration_s": round(result.duration_s, 6),
        "truncated": result.truncated,
        "error": result.error,
        "signal": result.signal,
        "finished_at": utcnow(),
    }


# Followers get lists of stored events; ``None`` means the run is over.
Batch = list[RunEvent] | None


@dataclass(eq=False)
class _LiveRun:
    run_id: int
    actor: str | None
    actor_id: int | None
    hosts: list[str]
    task: asyncio.Task[None] | None = None
    pending: list[RunEvent | dict[str, Any]] = field(default_factory=list)  # events, results
    pending_bytes: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    followers: set[asyncio.Queue[Batch]] = field(default_factory=set)
    decoders: dict[tuple[str, str], codecs.IncrementalDecoder] = field(default_factory=dict)
    cancel_reason: str | None = None
    stopping: bool = False  # the run is over: the flusher writes what is left and ends
    finish_detail: dict[str, Any] = field(default_factory=dict)  # for the run.finish entry


class RunSink:
    """How a :class:`RecordedJob` reports, from the event loop: events and finished hosts'
    result rows go out in the next batch, as a command run's do. ``threadsafe`` makes a
    call from another thread (a job's worker) land in the loop, in order."""

    def __init__(self, recorder: RunRecorder, live: _LiveRun) -> None:
        self._recorder = recorder
        self._live = live
        self.run_id = live.run_id
        self.audit_detail = live.finish_detail  # merged into the run.finish audit entry

    def event(self, event: RunEvent, size: int = 0) -> None:
        self._recorder._queue(self._live, event, size)

    def host_done(self, host: str, row: dict[str, Any]) -> None:
        """Columns of ``run_host_results`` for a host that is done (as ``result_row``)."""
        self._live.pending.append({"host": host, **row})

    def threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._recorder._loop is not None
        self._recorder._loop.call_soon_threadsafe(fn, *args)


class RecordedJob(Protocol):
    """A run's work other than a command fan-out (a playbook, for one)."""

    async def execute(self, sink: RunSink) -> tuple[RunStatus, str | None]:
        """Do the work, reporting through ``sink``; return the final status and the run's
        error, if any. Cancellation (cancel, shutdown) arrives as ``CancelledError``: stop,
        report what is known, re-raise."""
        ...

    def abandon(self) -> None:
        """The recorder will never execute this job (it is shutting down)."""
        ...


class RunRecorder:
    """Background runs plus their live followers. Create and use inside the event loop."""

    def __init__(self, db: Database, pool: ConnectionPool, settings: ServiceSettings) -> None:
        self.db = db
        self.pool = pool
        self.settings = settings
        self._live: dict[int, _LiveRun] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._idle = threading.Event()
        self._idle.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    @property
    def in_flight(self) -> int:
        return len(self._live)

    # ------------------------------------------------------------------ thread-safe API

    def submit(self, run: Run, targets: list[ConnectionTarget], *, actor: str | None,
               actor_id: int | None) -> None:
        """Start ``run`` in the loop; callable from any thread."""
        assert run.id is not None
        live = _LiveRun(run.id, actor, actor_id, [t.name for t in targets])
        self._call(self._spawn, live, run, targets)

    def submit_job(self, run_id: int, hosts: list[str], job: RecordedJob, *,
                   actor: str | None, actor_id: int | None) -> None:
        """Start ``job`` as run ``run_id`` in the loop; callable from any thread."""
        live = _LiveRun(run_id, actor, actor_id, list(hosts))
        self._call(self._spawn_job, live, job)

    def cancel(self, run_id: int, reason: str = "canceled on request") -> None:
        """Ask a live run to stop; callable from any thread (a no-op for finished runs)."""
        self._call(self._cancel, run_id, reason)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None:
            raise RuntimeError("RunRecorder.start() was not awaited")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ loop side

    def is_live(self, run_id: int) -> bool:
        return run_id in self._live

    def follow(self, run_id: int) -> asyncio.Queue[Batch] | None:
        """A queue of stored-event batches for a live run (``None`` when not live)."""
        live = self._live.get(run_id)
        if live is None:
            return None
        queue: asyncio.Queue[Batch] = asyncio.Queue(FOLLOWER_QUEUE)
        live.followers.add(queue)
        return queue

    def unfollow(self, run_id: int, queue: asyncio.Queue[Batch]) -> None:
        live = self._live.get(run_id)
        if live is not None:
            live.followers.discard(queue)

    def _spawn(self, live: _LiveRun, run: Run, targets: list[ConnectionTarget]) -> None:
        if self._closing:
            return
        self._live[live.run_id] = live
        live.task = asyncio.create_task(self._run(live, run, targets),
                                        name=f"serverguard-run-{live.run_id}")

    def _spawn_job(self, live: _LiveRun, job: RecordedJob) -> None:
        if self._closing:
            job.abandon()
            return
        self._live[live.run_id] = live
        live.task = asyncio.create_task(
            self._drive(live, lambda: job.execute(RunSink(self, live))),
            name=f"serverguard-run-{live.run_id}")

    def _cancel(self, run_id: int, reason: str) -> None:
        live = self._live.get(run_id)
        if (live is not None and live.task is not None and live.cancel_reason is None
                and not live.stopping):  # a run already winding up records its own end
            live.cancel_reason = reason
            live.task.cancel()

    async def close(self) -> None:
        """Cancel every live run (recorded as canceled) and wait for them to wind up."""
        self._closing = True
        tasks = [live.task for live in self._live.values() if live.task is not None]
        for run_id in list(self._live):
            self._cancel(run_id, "the service is shutting down")
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    # ------------------------------------------------------------------ one run

    async def _run(self, live: _LiveRun, run: Run, targets: list[ConnectionTarget]) -> None:
        async def fan_out_command() -> tuple[RunStatus, str | None]:
            _, summary = await fan_out(
                self.pool, targets, run.command, forks=run.forks, timeout=run.timeout,
                on_output=lambda host, stream, data: self._on_output(live, host, stream, data),
                on_result=lambda result: self._on_result(live, result),
            )
            return (RunStatus.SUCCESSFUL if summary.exit_code == 0 else RunStatus.FAILED), None

        await self._drive(live, fan_out_command)

    async def _drive(self, live: _LiveRun,
                     work: Callable[[], Awaitable[tuple[RunStatus, str | None]]]) -> None:
        """Run ``work`` between the run's ``running`` and its recorded end."""
        flusher = asyncio.create_task(self._flush_loop(live))
        status, error = RunStatus.FAILED, None
        started = time.perf_counter()
        try:
            event = await asyncio.to_thread(run_store.set_status_tx, self.db, run_id=live.run_id,
                                            status=RunStatus.RUNNING)
            self._publish(live, [event])
            try:
                status, error = await work()
            except asyncio.CancelledError:
                status, error = RunStatus.CANCELED, live.cancel_reason or "canceled"
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            except Exception as exc:  # recorded on the run: a broken run must not vanish
                log.exception("run %s failed", live.run_id)
                error = f"{type(exc).__name__}: {exc}"
        finally:
            await self._finish(live, flusher, status, error, time.perf_counter() - started)

    async def _finish(self, live: _LiveRun, flusher: asyncio.Task[None], status: RunStatus,
                      error: str | None, wall_s: float) -> None:
        try:
            # Never cancel the flusher: a batch written but not yet published would reach
            # the database and never the followers (they would skip past it).
            live.stopping = True
            live.wake.set()
            await flusher
            canceled: list[str] = []
            if status == RunStatus.CANCELED or error is not None:
                canceled = await asyncio.to_thread(run_store.cancel_pending_tx, self.db,
                                                   run_id=live.run_id, now=utcnow())
            counts = await asyncio.to_thread(self._counts, live.run_id)
            event = await asyncio.to_thread(
                run_store.set_status_tx, self.db, run_id=live.run_id, status=status,
                counts=counts, error=error)
            self._publish(live, [event])
            await asyncio.to_thread(audit.append, self.db, AuditEntryCreate(
                actor=live.actor, actor_id=live.actor_id, action="run.finish",
                target=f"run:{live.run_id}", hosts=live.hosts, result=status.value,
                detail={**live.finish_detail, **counts, "canceled_hosts": canceled,
                        "wall_s": round(wall_s, 3), **({"error": error} if error else {})},
            ))
        except Exception:
            log.exception("run %s: cannot record its end", live.run_id)
        finally:
            self._live.pop(live.run_id, None)
            for queue in list(live.followers):
                _offer(queue, None)

    def _counts(self, run_id: int) -> dict[str, int]:
        with self.db.session() as session:
            results = run_store.results_of(session, run_id=run_id)
        ok = sum(1 for r in results if r.status == HostStatus.OK)
        unreachable = sum(1 for r in results if r.status == HostStatus.UNREACHABLE)
        failed = sum(1 for r in results if r.status in (HostStatus.FAILED, HostStatus.TIMEOUT))
        return {"ok": ok, "failed": failed, "unreachable": unreachable}

    # ------------------------------------------------------------------ events

    def _on_output(self, live: _LiveRun, host: str, stream: str, data: bytes) -> None:
        decoder = live.decoders.get((host, stream))
        if decoder is None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
            live.decoders[(host, stream)] = decoder
        text = decoder.decode(data).replace("\x00", "\\x00")
        if text:
            self._queue(live, RunEvent(run_id=live.run_id, kind=RunEventKind.OUTPUT, host=host,
                                       stream=stream, data=text), len(text))

    def _on_result(self, live: _LiveRun, result: ExecResult) -> None:
        for stream in ("stdout", "stderr"):
            decoder = live.decoders.pop((result.host, stream), None)
            if decoder is not None:
                rest = decoder.decode(b"", final=True)
                if rest:
                    self._queue(live, RunEvent(run_id=live.run_id, kind=RunEventKind.OUTPUT,
                                               host=result.host, stream=stream, data=rest), 0)
        live.pending.append({"host": result.host, **result_row(result)})
        self._queue(live, RunEvent(run_id=live.run_id, kind=RunEventKind.HOST, host=result.host,
                                   data=json.dumps(_host_event(result))), 0)

    def _queue(self, live: _LiveRun, event: RunEvent, size: int) -> None:
        live.pending.append(event)
        live.pending_bytes += size
        if live.pending_bytes >= FLUSH_BYTES:
            live.wake.set()

    async def _flush_loop(self, live: _LiveRun) -> None:
        while not live.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.wake.wait(), FLUSH_INTERVAL)
            live.wake.clear()
            await self._flush(live)
        await self._flush(live)  # whatever came in with the last wake-up

    async def _flush(self, live: _LiveRun) -> None:
        if not live.pending:
            return
        batch, live.pending, live.pending_bytes = live.pending, [], 0
        events = [item for item in batch if isinstance(item, RunEvent)]
        results = [item for item in batch if isinstance(item, dict)]
        try:
            stored = await asyncio.to_thread(run_store.write_batch_tx, self.db,
                                             run_id=live.run_id, events=events, results=results)
        except Exception:  # the run goes on; its end is still recorded
            log.exception("run %s: %d events could not be stored", live.run_id, len(events))
            return
        self._publish(live, stored)

    def _publish(self, live: _LiveRun, events: list[RunEvent]) -> None:
        for queue in list(live.followers):
            if not _offer(queue, events):
                live.followers.discard(queue)  # too slow: it may reconnect and replay


def _offer(queue: asyncio.Queue[Batch], item: Batch) -> bool:
    try:
        queue.put_nowait(item)
    except asyncio.QueueFull:
        return False
    return True


def _host_event(result: ExecResult) -> dict[str, Any]:
    return {
        "host": result.host,
        "status": host_status(result).value,
        "rc": result.rc,
        "duration_s": round(result.duration_s, 6),
        "truncated": result.truncated,
        "error": result.error,
        "signal": result.signal,
    }


# ---------------------------------------------------------------------------- starting runs


def start_command_run(
    session: Session,
    *,
    db: Database,
    recorder: RunRecorder,
    inventory: Inventory | None,
    principal: Principal,
    data: RunCreate,
    policy: CommandPolicy,
    source: str | None,
) -> Run:
    """Check, record and start a command run for ``principal``.

    Order matters: the role first (viewers cannot run anything), then the hosts (a pattern
    that matches nothing in the caller's scope is not found, whether the hosts are absent or
    just not theirs), then the policy (a denial is audited with the hosts it would have hit).
    """
    principal.require(Role.OPERATOR, "starting a run")
    if data.override_policy and not principal.is_admin:
        raise PermissionDenied("override_policy is for admins only")
    hosts = resolve_pattern(inventory, principal, data.pattern)
    decision = policy.check(data.command)
    override = None
    if not decision.allowed:
        assert decision.rule is not None and decision.reason is not None
        audit.append(db, AuditEntryCreate(
            actor=principal.username, actor_id=principal.user_id, source=source,
            action="policy.deny" if not data.override_policy else "policy.override",
            target=f"rule:{decision.rule}", hosts=hosts,
            result="denied" if not data.override_policy else "overridden",
            detail={"command": data.command, "rule": decision.rule, "reason": decision.reason},
        ))
        if not data.override_policy:
            raise PolicyDenied(data.command, decision.rule, decision.reason)
        override = decision.rule
    assert inventory is not None
    try:
        targets = inventory.targets(hosts, default_policy=recorder.settings.host_key_policy)
    except InventoryError as exc:
        raise ValidationFailed(str(exc), [("pattern", str(exc))]) from exc
    run = run_store.create_run(session, data=data, hosts=hosts, created_by=principal.user_id,
                               policy_override=override)
    session.commit()
    recorder.submit(run, targets, actor=principal.username, actor_id=principal.user_id)
    return run


def resolve_pattern(inventory: Inventory | None, principal: Principal, pattern: str) -> list[str]:
    """Hosts of ``pattern`` within the caller's scope; raises :class:`NotFound` for none."""
    if inventory is None:
        raise NotFound("host", pattern, f"no host matches pattern {pattern!r} (no inventory "
                       "is configured)")
    try:
        hosts = inventory.select(pattern)
    except InventoryError as exc:
        raise ValidationFailed(f"invalid pattern: {exc}", [("pattern", str(exc))]) from exc
    hosts = HostScope(inventory, principal).filter(hosts)
    if not hosts:
        raise NotFound("host", pattern, f"no host matches pattern {pattern!r}")
    return hosts


def cancel_run(*, recorder: RunRecorder, run: Run) -> None:
    """Ask a run to stop (its remote processes are killed); a finished run is a conflict."""
    if RunStatus(run.status).finished:
        raise ConflictError(f"run {run.id} has already finished ({run.status})")
    assert run.id is not None
    recorder.cancel(run.id)


__all__ = ["RecordedJob", "RunRecorder", "RunSink", "cancel_run", "resolve_pattern",
           "start_command_run"]
