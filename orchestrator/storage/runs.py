"""Queries on runs, their per-host results and their event streams.

Keyword-only arguments; functions that write flush but do not commit, except the ones the
run recorder calls from its own thread (``*_tx``), which are whole units of work.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from orchestrator.storage.db import Database
from orchestrator.storage.models import (
    HostResult,
    HostStatus,
    PlaybookRunRecord,
    Run,
    RunCreate,
    RunEvent,
    RunEventKind,
    RunKind,
    RunStatus,
)
from orchestrator.storage.types import utcnow


def create_run(
    session: Session,
    *,
    data: RunCreate,
    hosts: Sequence[str],
    created_by: int | None,
    kind: RunKind = RunKind.COMMAND,
    policy_override: str | None = None,
) -> Run:
    """A pending run with one pending result per host (in the run's host order)."""
    run = Run(
        pattern=data.pattern, command=data.command, forks=data.forks, timeout=data.timeout,
        kind=kind, status=RunStatus.PENDING, created_by=created_by, hosts=list(hosts),
        policy_override=policy_override,
    )
    session.add(run)
    session.flush()
    assert run.id is not None
    session.add_all(HostResult(run_id=run.id, host=h) for h in hosts)
    session.flush()
    return run


def get_run(session: Session, *, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def _in_scope(scope_hosts: Collection[str] | None) -> list[sa.ColumnElement[bool]]:
    """Runs all of whose hosts are in ``scope_hosts`` (``None``: no restriction)."""
    if scope_hosts is None:
        return []
    outside = select(HostResult.id).where(
        col(HostResult.run_id) == col(Run.id),
        col(HostResult.host).not_in(list(scope_hosts)) if scope_hosts else sa.true(),
    )
    return [~sa.exists(outside)]


def list_runs(
    session: Session,
    *,
    skip: int = 0,
    limit: int = 100,
    status: RunStatus | None = None,
    created_by: int | None = None,
    scope_hosts: Collection[str] | None = None,
) -> tuple[list[Run], int]:
    """A page of runs, newest first; ``scope_hosts`` keeps runs entirely within it."""
    conditions = _in_scope(scope_hosts)
    if status is not None:
        conditions.append(col(Run.status) == status.value)
    if created_by is not None:
        conditions.append(col(Run.created_by) == created_by)
    count = session.exec(select(func.count()).select_from(Run).where(*conditions)).one()
    rows = session.exec(
        select(Run).where(*conditions).order_by(col(Run.id).desc()).offset(skip).limit(limit)
    ).all()
    return list(rows), count


def results_of(session: Session, *, run_id: int) -> list[HostResult]:
    return list(session.exec(
        select(HostResult).where(col(HostResult.run_id) == run_id).order_by(col(HostResult.id))
    ).all())


def events_after(
    session: Session, *, run_id: int, after_id: int = 0, limit: int = 1000
) -> list[RunEvent]:
    return list(session.exec(
        select(RunEvent)
        .where(col(RunEvent.run_id) == run_id, col(RunEvent.id) > after_id)
        .order_by(col(RunEvent.id)).limit(limit)
    ).all())


# ---------------------------------------------------------------------------- recorder side


def set_status_tx(
    db: Database, *, run_id: int, status: RunStatus, now: datetime | None = None,
    counts: dict[str, int] | None = None, error: str | None = None,
) -> RunEvent:
    """Move a run to ``status`` and record the matching event; returns the event."""
    now = now or utcnow()
    values: dict[str, Any] = {"status": status.value}
    if status == RunStatus.RUNNING:
        values["started_at"] = now
    if status.finished:
        values["finished_at"] = now
    if counts:
        values.update(counts)
    if error is not None:
        values["error"] = error
    with db.session() as session:
        session.execute(sa.update(Run).where(col(Run.id) == run_id).values(**values))
        event = RunEvent(run_id=run_id, kind=RunEventKind.STATUS, data=status.value,
                         created_at=now)
        session.add(event)
        session.commit()
        return event


def write_batch_tx(
    db: Database,
    *,
    run_id: int,
    events: Sequence[RunEvent],
    results: Sequence[dict[str, Any]],
) -> list[RunEvent]:
    """Store events (in order) and finished hosts' results in one transaction."""
    with db.session() as session:
        for result in results:
            session.execute(
                sa.update(HostResult)
                .where(col(HostResult.run_id) == run_id, col(HostResult.host) == result["host"])
                .values(**result)
            )
        session.add_all(events)
        session.commit()
        return list(events)


def cancel_pending_tx(db: Database, *, run_id: int, now: datetime) -> list[str]:
    """Mark the hosts that never finished as canceled; returns their names."""
    with db.session() as session:
        hosts = list(session.exec(
            select(HostResult.host).where(
                col(HostResult.run_id) == run_id,
                col(HostResult.status) == HostStatus.PENDING.value,
            )
        ).all())
        session.execute(
            sa.update(HostResult)
            .where(col(HostResult.run_id) == run_id,
                   col(HostResult.status) == HostStatus.PENDING.value)
            .values(status=HostStatus.CANCELED.value, finished_at=now,
                    error="run canceled before this host finished")
        )
        session.commit()
    return hosts


# ---------------------------------------------------------------------------- playbook runs


def create_playbook_run(
    session: Session,
    *,
    record: PlaybookRunRecord,
    hosts: Sequence[str],
    created_by: int | None,
    timeout: float,
    forks: int,
) -> Run:
    """A pending ``runs`` row of kind ``playbook``, its ``playbook_runs`` row (``record``,
    whose ``run_id`` is filled in) and one pending result per host."""
    run = Run(pattern=record.limit, command=record.playbook, forks=forks, timeout=timeout,
              kind=RunKind.PLAYBOOK, status=RunStatus.PENDING, created_by=created_by,
              hosts=list(hosts))
    session.add(run)
    session.flush()
    assert run.id is not None
    record.run_id = run.id
    session.add(record)
    session.add_all(HostResult(run_id=run.id, host=h) for h in hosts)
    session.flush()
    return run


def get_playbook_run(session: Session, *, run_id: int) -> tuple[Run, PlaybookRunRecord] | None:
    row = session.exec(
        select(Run, PlaybookRunRecord)
        .join(PlaybookRunRecord, col(PlaybookRunRecord.run_id) == col(Run.id))
        .where(col(Run.id) == run_id)
    ).first()
    return (row[0], row[1]) if row is not None else None


def list_playbook_runs(
    session: Session,
    *,
    skip: int = 0,
    limit: int = 100,
    status: RunStatus | None = None,
    playbook: str | None = None,
    created_by: int | None = None,
    scope_hosts: Collection[str] | None = None,
) -> tuple[list[tuple[Run, PlaybookRunRecord]], int]:
    """A page of playbook runs, newest first; ``scope_hosts`` as for :func:`list_runs`."""
    conditions = _in_scope(scope_hosts)
    if status is not None:
        conditions.append(col(Run.status) == status.value)
    if playbook is not None:
        conditions.append(col(PlaybookRunRecord.playbook) == playbook)
    if created_by is not None:
        conditions.append(col(Run.created_by) == created_by)
    joined = select(Run, PlaybookRunRecord).join(
        PlaybookRunRecord, col(PlaybookRunRecord.run_id) == col(Run.id))
    count = session.exec(
        select(func.count()).select_from(Run)
        .join(PlaybookRunRecord, col(PlaybookRunRecord.run_id) == col(Run.id))
        .where(*conditions)
    ).one()
    rows = session.exec(
        joined.where(*conditions).order_by(col(Run.id).desc()).offset(skip).limit(limit)
    ).all()
    return [(r[0], r[1]) for r in rows], count


def page_events(
    session: Session,
    *,
    run_id: int,
    skip: int = 0,
    limit: int = 100,
    host: str | None = None,
    kinds: Collection[RunEventKind] | None = None,
) -> tuple[list[RunEvent], int]:
    """A page of a run's stored events, oldest first, optionally of one host or kinds."""
    conditions: list[sa.ColumnElement[bool]] = [col(RunEvent.run_id) == run_id]
    if host is not None:
        conditions.append(col(RunEvent.host) == host)
    if kinds:
        conditions.append(col(RunEvent.kind).in_([k.value for k in kinds]))
    count = session.exec(select(func.count()).select_from(RunEvent).where(*conditions)).one()
    rows = session.exec(
        select(RunEvent).where(*conditions).order_by(col(RunEvent.id)).offset(skip).limit(limit)
    ).all()
    return list(rows), count


def update_playbook_record_tx(db: Database, *, run_id: int, **values: Any) -> None:
    """Write what the run learnt about itself (runner id, strategy, exit code, messages)."""
    with db.session() as session:
        session.execute(sa.update(PlaybookRunRecord)
                        .where(col(PlaybookRunRecord.run_id) == run_id).values(**values))
        session.commit()


def fail_interrupted_runs(db: Database) -> list[int]:
    """Runs a previous process left pending or running: it died, they cannot finish."""
    unfinished = [RunStatus.PENDING.value, RunStatus.RUNNING.value]
    with db.session() as session:
        ids = list(session.exec(select(Run.id).where(col(Run.status).in_(unfinished))).all())
    for run_id in ids:
        if run_id is None:
            continue
        cancel_pending_tx(db, run_id=run_id, now=utcnow())
        set_status_tx(db, run_id=run_id, status=RunStatus.FAILED,
                      error="the service stopped while this run was in flight")
    return [i for i in ids if i is not None]
