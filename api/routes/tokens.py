"""Personal API tokens: shown once at creation, stored hashed, revocable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import MAX_ID, AuditDep, IdPath, PageDep, PrincipalDep, SessionDep, StateDep
from api.problems import AUTH_ERRORS, NOT_FOUND
from api.routes import API_PREFIX
from orchestrator.storage import accounts
from orchestrator.storage.models import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenPublic,
    ApiTokensPublic,
    TokenKind,
)

router = APIRouter(prefix=f"{API_PREFIX}/tokens", tags=["auth"], responses=AUTH_ERRORS)


@router.get("", response_model=ApiTokensPublic, name="token.list")
def list_tokens(
    principal: PrincipalDep, session: SessionDep, page: PageDep,
    kind: Annotated[TokenKind | None, Query()] = None,
    include_revoked: Annotated[bool, Query()] = False,
    user_id: Annotated[int | None, Query(ge=1, le=MAX_ID,
                                         description="Admins only: another user's")] = None,
) -> ApiTokensPublic:
    """Your tokens (admins: anyone's, with ``user_id``, or everyone's)."""
    if not principal.is_admin:
        user_id = principal.user_id
    rows, count = accounts.list_tokens(session, skip=page.skip, limit=page.limit,
                                       user_id=user_id, kind=kind,
                                       include_revoked=include_revoked)
    return ApiTokensPublic(data=[ApiTokenPublic.model_validate(r) for r in rows], count=count)


@router.post("", response_model=ApiTokenCreated, status_code=201, name="token.create")
def create_token(data: ApiTokenCreate, principal: PrincipalDep, session: SessionDep,
                 state: StateDep, note: AuditDep) -> ApiTokenCreated:
    """A new personal token for yourself. ``token`` is in this answer only: keep it."""
    created = state.auth.create_personal_token(session, principal=principal, data=data)
    note.target, note.detail = f"token:{created.id}", {"name": data.name}
    return created


@router.get("/{token_id}", response_model=ApiTokenPublic, name="token.read",
            responses=NOT_FOUND)
def read_token(token_id: IdPath, principal: PrincipalDep, session: SessionDep,
               state: StateDep) -> ApiTokenPublic:
    row = state.auth.visible_token(session, principal=principal, token_id=token_id)
    return ApiTokenPublic.model_validate(row)


@router.delete("/{token_id}", status_code=204, name="token.revoke", responses=NOT_FOUND)
def revoke_token(token_id: IdPath, principal: PrincipalDep, session: SessionDep, state: StateDep,
                 note: AuditDep) -> Response:
    """Revoke a token at once (a login token revokes its whole login)."""
    note.target = f"token:{token_id}"
    state.auth.revoke_token(session, principal=principal, token_id=token_id)
    return Response(status_code=204)
