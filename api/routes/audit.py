"""The audit log (admins): entries with filters, and a verification of the chain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminDep, PageDep, SessionDep, StateDep
from api.problems import AUTH_ERRORS, UNAVAILABLE
from api.routes import API_PREFIX
from api.schemas import AuditVerification
from orchestrator import audit
from orchestrator.storage.models import AuditEntriesPublic, AuditEntryPublic

router = APIRouter(prefix=f"{API_PREFIX}/audit", tags=["audit"], responses=AUTH_ERRORS)


@router.get("", response_model=AuditEntriesPublic, name="audit.list")
def list_audit(
    principal: AdminDep, session: SessionDep, page: PageDep,
    actor: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64,
                                        description="run matches run.create, run.finish...")
                      ] = None,
    result: Annotated[str | None, Query(max_length=32)] = None,
    host: Annotated[str | None, Query(max_length=255)] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
) -> AuditEntriesPublic:
    """Entries newest first: who, from where, what, on which hosts, when, result."""
    rows, count = audit.list_entries(session, skip=page.skip, limit=page.limit, actor=actor,
                                     action=action, result=result, host=host, since=since,
                                     until=until)
    return AuditEntriesPublic(data=[AuditEntryPublic.model_validate(r) for r in rows],
                              count=count)


@router.get("/verify", response_model=AuditVerification, name="audit.verify",
            responses=UNAVAILABLE)
async def verify_audit(principal: AdminDep, state: StateDep) -> AuditVerification:
    """Walk the whole chain; a broken one answers 503 naming the first bad entry."""
    report = await run_in_threadpool(audit.verify_database, state.db)
    return AuditVerification(ok=True, entries=report.entries, last_id=report.last_id,
                             head_hash=report.head_hash)
