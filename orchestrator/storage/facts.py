"""The host facts cache: one row per host, replaced by every successful gathering."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.storage.models import HostFactsRecord


def facts_of(session: Session, *, hosts: Collection[str]) -> dict[str, HostFactsRecord]:
    """The cached facts of ``hosts`` (those never gathered are absent)."""
    if not hosts:
        return {}
    rows = session.exec(select(HostFactsRecord).where(col(HostFactsRecord.host).in_(hosts)))
    return {row.host: row for row in rows}


def save_facts(session: Session, *, host: str, facts: dict[str, Any],
               gathered_at: datetime) -> HostFactsRecord:
    """Replace ``host``'s facts (flushes; the caller commits)."""
    row = session.get(HostFactsRecord, host)
    if row is None:
        row = HostFactsRecord(host=host, gathered_at=gathered_at, facts=facts)
        session.add(row)
    else:
        row.gathered_at, row.facts = gathered_at, facts
    session.flush()
    return row
