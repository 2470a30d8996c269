"""Command runs: start (202), list, read with per-host results, follow live (SSE), cancel.

Playbook runs are another ``kind`` of the same resource (``RunKind``), started by their
own ``POST`` (:mod:`api.routes.playbooks`) and followed through the same events stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlmodel import Session

from api.deps import (
    AuditDep,
    IdPath,
    IdQuery,
    InventoryDep,
    PageDep,
    PrincipalDep,
    ScopeDep,
    SessionDep,
    StateDep,
)
from api.problems import AUTH_ERRORS, CONFLICT, NOT_FOUND, UNAVAILABLE
from api.routes import API_PREFIX
from orchestrator.auth.principal import HostScope
from orchestrator.errors import NotFound
from orchestrator.storage import runs as run_store
from orchestrator.storage.db import Database
from orchestrator.storage.models import (
    HostResultPublic,
    Role,
    Run,
    RunCreate,
    RunDetail,
    RunEvent,
    RunEventKind,
    RunPublic,
    RunsPublic,
    RunStatus,
)
from orchestrator.storage.recorder import cancel_run, start_command_run

router = APIRouter(prefix=f"{API_PREFIX}/runs", tags=["runs"], responses=AUTH_ERRORS)

REPLAY_BATCH = 1000
POLL_INTERVAL = 0.25  # seconds, for runs executing in another process (or not yet started)


def visible_run(session: Session, scope: HostScope, run_id: int) -> Run:
    """A run all of whose hosts are in scope; any other run is not found."""
    run = run_store.get_run(session, run_id=run_id)
    if run is None or not scope.allows_all(run.hosts):
        raise NotFound("run", run_id)
    return run


@router.post("", response_model=RunPublic, status_code=202, name="run.create",
             responses=NOT_FOUND | UNAVAILABLE)
def create_run(
    data: RunCreate, request: Request, response: Response, principal: PrincipalDep,
    inventory: InventoryDep, session: SessionDep, state: StateDep, note: AuditDep,
) -> RunPublic:
    """Start a command on every host of ``pattern`` in your scope; returns at once.

    Follow it at ``/runs/{id}/events``. Commands that match a deny rule of the command
    policy are refused (403, audited) unless an admin sets ``override_policy``.
    """
    note.detail = {"command": data.command, "pattern": data.pattern}
    run = start_command_run(
        session, db=state.db, recorder=state.recorder, inventory=inventory,
        principal=principal, data=data, policy=state.policy,
        source=request.client.host if request.client else None,
    )
    note.target, note.hosts = f"run:{run.id}", list(run.hosts)
    if run.policy_override:
        note.detail["policy_override"] = run.policy_override
    response.headers["Location"] = f"{router.prefix}/{run.id}"
    return RunPublic.model_validate(run)


@router.get("", response_model=RunsPublic, name="run.list")
def list_runs(
    scope: ScopeDep, session: SessionDep, page: PageDep,
    status: Annotated[RunStatus | None, Query()] = None,
    created_by: IdQuery = None,
) -> RunsPublic:
    """Runs whose hosts are all in your scope, newest first."""
    scope_hosts = None if scope.everything else scope.hosts()
    rows, count = run_store.list_runs(session, skip=page.skip, limit=page.limit, status=status,
                                      created_by=created_by, scope_hosts=scope_hosts)
    return RunsPublic(data=[RunPublic.model_validate(r) for r in rows], count=count)


@router.get("/{run_id}", response_model=RunDetail, name="run.read", responses=NOT_FOUND)
def read_run(run_id: IdPath, scope: ScopeDep, session: SessionDep) -> RunDetail:
    run = visible_run(session, scope, run_id)
    results = [HostResultPublic.model_validate(r)
               for r in run_store.results_of(session, run_id=run_id)]
    return RunDetail.model_validate(run, update={"results": results})


@router.post("/{run_id}/cancel", response_model=RunPublic, status_code=202,
             name="run.cancel", responses=NOT_FOUND | CONFLICT)
def cancel(run_id: IdPath, principal: PrincipalDep, scope: ScopeDep, session: SessionDep,
           state: StateDep, note: AuditDep) -> RunPublic:
    """Stop a run: its remote processes are killed, unfinished hosts end ``canceled``."""
    run = visible_run(session, scope, run_id)
    note.target, note.hosts = f"run:{run_id}", list(run.hosts)
    principal.require(Role.OPERATOR, "canceling a run")
    cancel_run(recorder=state.recorder, run=run)
    return RunPublic.model_validate(run)


def streamable_run(run_id: IdPath, scope: ScopeDep, state: StateDep) -> Run:
    """Resolved before the stream starts: once it has, a 404 can no longer be sent."""
    return _visible_run_tx(state.db, scope, run_id)


@router.get("/{run_id}/events", response_class=EventSourceResponse, name="run.events",
            responses=NOT_FOUND)
async def run_events(
    run: Annotated[Run, Depends(streamable_run)], scope: ScopeDep, state: StateDep,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**63 - 1)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: the stored events first (after ``Last-Event-ID``), then live ones
    until the run ends. Events: ``output`` (a host's stdout/stderr text), ``host`` (a host
    finished: its result), ``status`` (the run's status; the stream ends after a final one).
    """
    db = state.db
    assert run.id is not None
    run_id = run.id
    recorder = state.recorder
    last = last_event_id or 0
    queue = recorder.follow(run_id)
    try:
        while True:
            events = await asyncio.to_thread(_events_after_tx, db, run_id, last)
            for event in events:
                last = event.id or last
                yield _sse(event)
                if _ends(event):
                    return
            if len(events) == REPLAY_BATCH:
                continue
            if queue is None:
                queue = recorder.follow(run_id)
            if queue is None:
                run = await asyncio.to_thread(_visible_run_tx, db, scope, run_id)
                if RunStatus(run.status).finished and not await asyncio.to_thread(
                        _events_after_tx, db, run_id, last):
                    return  # finished long ago and fully replayed
                await asyncio.sleep(POLL_INTERVAL)
                continue
            batch = await queue.get()
            if batch is None:  # the run is over: what is left is in the database
                recorder.unfollow(run_id, queue)
                queue = None
                continue
            for event in batch:
                if event.id is not None and event.id > last:
                    last = event.id
                    yield _sse(event)
                    if _ends(event):
                        return
    finally:
        if queue is not None:
            recorder.unfollow(run_id, queue)


def _visible_run_tx(db: Database, scope: HostScope, run_id: int) -> Run:
    with db.session() as session:
        return visible_run(session, scope, run_id)


def _events_after_tx(db: Database, run_id: int, after: int) -> list[RunEvent]:
    with db.session() as session:
        return run_store.events_after(session, run_id=run_id, after_id=after,
                                      limit=REPLAY_BATCH)


def _ends(event: RunEvent) -> bool:
    return event.kind == RunEventKind.STATUS and RunStatus(event.data).finished


def _sse(event: RunEvent) -> ServerSentEvent:
    if event.kind == RunEventKind.OUTPUT:
        data: object = {"host": event.host, "stream": event.stream, "text": event.data}
    elif event.kind == RunEventKind.STATUS:
        data = {"status": event.data}
    else:  # a host's end, and playbook runs' events, are stored as JSON
        data = json.loads(event.data)
    return ServerSentEvent(event=str(event.kind), id=str(event.id), data=data)
