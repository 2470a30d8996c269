"""Playbook runs: start (202), list, read with each host's recap, page through the events,
follow live (SSE), cancel; and the playbooks there are to run.

A playbook run is a run of kind ``playbook``: ``/runs/{id}/events`` and ``/runs/{id}/cancel``
work on it as well. The checks and the recording live in :mod:`orchestrator.playbook_runs`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
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
from api.routes.runs import run_events
from api.schemas import PlaybookInfo, PlaybooksPublic
from orchestrator.auth.principal import HostScope
from orchestrator.errors import NotFound
from orchestrator.playbook_runs import (
    host_recap,
    list_playbooks,
    public_event,
    public_run,
    start_playbook_run,
)
from orchestrator.playbooks.catalog import check_only
from orchestrator.storage import runs as run_store
from orchestrator.storage.db import Database
from orchestrator.storage.models import (
    PlaybookEventsPublic,
    PlaybookRunCreate,
    PlaybookRunDetail,
    PlaybookRunPublic,
    PlaybookRunRecord,
    PlaybookRunsPublic,
    Role,
    Run,
    RunEventKind,
    RunStatus,
)
from orchestrator.storage.recorder import cancel_run

router = APIRouter(prefix=f"{API_PREFIX}/playbook-runs", tags=["playbook runs"],
                   responses=AUTH_ERRORS)
catalog_router = APIRouter(prefix=f"{API_PREFIX}/playbooks", tags=["playbook runs"],
                           responses=AUTH_ERRORS)


@catalog_router.get("", response_model=PlaybooksPublic, name="playbook.list")
def list_available(_: PrincipalDep, state: StateDep) -> PlaybooksPublic:
    """The shipped playbooks, then those of the playbook directory (``SERVERGUARD_PLAYBOOK_DIR``,
    its top level; files in its subdirectories run too, named by their relative path)."""
    found = list_playbooks(state.settings.playbook_dir)
    data = [PlaybookInfo(name=p.name, source=p.source.value, check_only=check_only(p.path))
            for p in found]
    return PlaybooksPublic(data=data, count=len(data))


def visible_playbook_run(session: Session, scope: HostScope,
                         run_id: int) -> tuple[Run, PlaybookRunRecord]:
    """A playbook run all of whose hosts are in scope; any other run is not found."""
    found = run_store.get_playbook_run(session, run_id=run_id)
    if found is None or not scope.allows_all(found[0].hosts):
        raise NotFound("playbook run", run_id)
    return found


@router.post("", response_model=PlaybookRunPublic, status_code=202, name="playbook_run.create",
             responses=NOT_FOUND | UNAVAILABLE)
def create_playbook_run(
    data: PlaybookRunCreate, response: Response, principal: PrincipalDep,
    inventory: InventoryDep, session: SessionDep, state: StateDep, note: AuditDep,
) -> PlaybookRunPublic:
    """Start ``playbook`` on the hosts of ``limit`` in your scope; returns at once.

    ``playbook`` is a shipped playbook's name or a path under the playbook directory.
    Follow the run at ``/playbook-runs/{id}/events/stream``. Unknown playbooks, paths that
    leave the directory and YAML errors (``file:line:column``) are 422 problems naming the
    field; ``ansible_*`` extra vars are for admins only.
    """
    note.detail = {"playbook": data.playbook, "limit": data.limit, "check": data.check,
                   "diff": data.diff, "extra_vars": sorted(data.extra_vars)}
    run, record = start_playbook_run(
        session, db=state.db, recorder=state.recorder, inventory=inventory,
        inventory_sources=list(state.inventory.sources), principal=principal, data=data,
    )
    note.target, note.hosts = f"run:{run.id}", list(run.hosts)
    note.detail["runner_id"] = record.runner_id
    response.headers["Location"] = f"{router.prefix}/{run.id}"
    return public_run(run, record)


@router.get("", response_model=PlaybookRunsPublic, name="playbook_run.list")
def list_playbook_runs(
    scope: ScopeDep, session: SessionDep, page: PageDep,
    status: Annotated[RunStatus | None, Query()] = None,
    playbook: Annotated[str | None, Query(max_length=255)] = None,
    created_by: IdQuery = None,
) -> PlaybookRunsPublic:
    """Playbook runs whose hosts are all in your scope, newest first."""
    scope_hosts = None if scope.everything else scope.hosts()
    rows, count = run_store.list_playbook_runs(
        session, skip=page.skip, limit=page.limit, status=status, playbook=playbook,
        created_by=created_by, scope_hosts=scope_hosts)
    return PlaybookRunsPublic(data=[public_run(r, p) for r, p in rows], count=count)


@router.get("/{run_id}", response_model=PlaybookRunDetail, name="playbook_run.read",
            responses=NOT_FOUND)
def read_playbook_run(run_id: IdPath, scope: ScopeDep, session: SessionDep) -> PlaybookRunDetail:
    """The run with each host's recap (ok, changed, unreachable, failed, skipped, rescued,
    ignored), in the run's host order."""
    run, record = visible_playbook_run(session, scope, run_id)
    recap = [host_recap(r) for r in run_store.results_of(session, run_id=run_id)]
    return PlaybookRunDetail.model_validate(public_run(run, record), update={"recap": recap})


@router.get("/{run_id}/events", response_model=PlaybookEventsPublic,
            name="playbook_run.events", responses=NOT_FOUND)
def playbook_run_events(
    run_id: IdPath, scope: ScopeDep, session: SessionDep, page: PageDep,
    host: Annotated[str | None, Query(max_length=255)] = None,
    kind: Annotated[list[RunEventKind] | None, Query()] = None,
) -> PlaybookEventsPublic:
    """The stored events, oldest first: ``play_start``, ``task_start``, ``host_result`` (a
    task's module result on a host, secrets masked), ``warning``, ``error``, ``stats``,
    ``host`` (a host's end and recap), ``status`` (the run's)."""
    visible_playbook_run(session, scope, run_id)
    rows, count = run_store.page_events(session, run_id=run_id, skip=page.skip,
                                        limit=page.limit, host=host, kinds=kind)
    return PlaybookEventsPublic(data=[public_event(e) for e in rows], count=count)


def _streamable(run_id: IdPath, scope: ScopeDep, state: StateDep) -> Run:
    """Resolved before the stream starts: once it has, a 404 can no longer be sent."""
    return _visible_tx(state.db, scope, run_id)


def _visible_tx(db: Database, scope: HostScope, run_id: int) -> Run:
    with db.session() as session:
        return visible_playbook_run(session, scope, run_id)[0]


@router.get("/{run_id}/events/stream", response_class=EventSourceResponse,
            name="playbook_run.stream", responses=NOT_FOUND)
async def stream_playbook_run(
    run: Annotated[Run, Depends(_streamable)], scope: ScopeDep, state: StateDep,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**63 - 1)] = None,
) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events, as ``/runs/{id}/events``: the stored events (after
    ``Last-Event-ID``), then live ones; the stream ends after the final ``status`` event.
    Each event's ``data`` is the JSON of the stored event (as in ``/events``)."""
    async for event in run_events(run, scope, state, last_event_id):
        yield event


@router.post("/{run_id}/cancel", response_model=PlaybookRunPublic, status_code=202,
             name="playbook_run.cancel", responses=NOT_FOUND | CONFLICT)
def cancel_playbook_run(run_id: IdPath, principal: PrincipalDep, scope: ScopeDep,
                        session: SessionDep, state: StateDep,
                        note: AuditDep) -> PlaybookRunPublic:
    """Stop a run: ansible-playbook and its children are stopped, the run ends ``canceled``."""
    run, record = visible_playbook_run(session, scope, run_id)
    note.target, note.hosts = f"run:{run_id}", list(run.hosts)
    principal.require(Role.OPERATOR, "canceling a playbook run")
    cancel_run(recorder=state.recorder, run=run)
    return public_run(run, record)
