"""Grants: which inventory groups a user may see and act on. Admins manage them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import (
    AdminDep,
    AuditDep,
    IdPath,
    IdQuery,
    PageDep,
    PrincipalDep,
    SessionDep,
    StateDep,
)
from api.problems import AUTH_ERRORS, CONFLICT, NOT_FOUND
from api.routes import API_PREFIX
from orchestrator.errors import NotFound
from orchestrator.storage import accounts
from orchestrator.storage.models import GrantCreate, GrantPublic, GrantsPublic

router = APIRouter(prefix=f"{API_PREFIX}/grants", tags=["users"], responses=AUTH_ERRORS)


@router.get("", response_model=GrantsPublic, name="grant.list")
def list_grants(
    principal: PrincipalDep, session: SessionDep, page: PageDep,
    user_id: IdQuery = None,
    group: Annotated[str | None, Query(max_length=255)] = None,
) -> GrantsPublic:
    """Admins list anyone's grants; others see their own."""
    if not principal.is_admin:
        user_id = principal.user_id
    grants, count = accounts.list_grants(session, skip=page.skip, limit=page.limit,
                                         user_id=user_id, group=group)
    return GrantsPublic(data=[GrantPublic.model_validate(g) for g in grants], count=count)


@router.post("", response_model=GrantPublic, status_code=201, name="grant.create",
             responses=NOT_FOUND | CONFLICT)
def create_grant(data: GrantCreate, principal: AdminDep, session: SessionDep,
                 state: StateDep, note: AuditDep) -> GrantPublic:
    """Grant a user an inventory group (its descendants included; ``all``: everything).

    The group need not exist yet: grants follow the inventory as it changes.
    """
    note.target, note.detail = f"user:{data.user_id}", {"group": data.group}
    grant = state.auth.create_grant(session, data=data)
    return GrantPublic.model_validate(grant)


@router.get("/{grant_id}", response_model=GrantPublic, name="grant.read", responses=NOT_FOUND)
def read_grant(grant_id: IdPath, principal: PrincipalDep, session: SessionDep) -> GrantPublic:
    grant = accounts.get_grant(session, grant_id=grant_id)
    if grant is None or (grant.user_id != principal.user_id and not principal.is_admin):
        raise NotFound("grant", grant_id)
    return GrantPublic.model_validate(grant)


@router.delete("/{grant_id}", status_code=204, name="grant.delete", responses=NOT_FOUND)
def delete_grant(grant_id: IdPath, principal: AdminDep, session: SessionDep,
                 state: StateDep, note: AuditDep) -> Response:
    grant = accounts.get_grant(session, grant_id=grant_id)
    if grant is None:
        raise NotFound("grant", grant_id)
    note.target, note.detail = f"user:{grant.user_id}", {"group": grant.group}
    state.auth.delete_grant(session, grant=grant)
    return Response(status_code=204)
