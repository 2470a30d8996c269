"""Sign-in: ``POST /login`` (token pair), ``POST /login/refresh``, ``POST /logout``."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.deps import AuditDep, PrincipalDep, SessionDep, StateDep
from api.problems import AUTH_ERRORS
from api.routes import API_PREFIX
from orchestrator.storage.models import LoginRequest, RefreshRequest, TokenPair

router = APIRouter(prefix=API_PREFIX, tags=["auth"], responses=AUTH_ERRORS)


@router.post("/login", response_model=TokenPair, name="login")
def login(data: LoginRequest, session: SessionDep, state: StateDep, note: AuditDep) -> TokenPair:
    """Trade a user name and password for an access token and a refresh token.

    Five failed logins in a row lock the account for 30 minutes (settings).
    """
    note.actor, note.target = data.username, f"user:{data.username}"
    user, pair = state.auth.login(session, username=data.username, password=data.password)
    note.actor_id = user.id
    return pair


@router.post("/login/refresh", response_model=TokenPair, name="login.refresh")
def refresh(data: RefreshRequest, session: SessionDep, state: StateDep,
            note: AuditDep) -> TokenPair:
    """Trade a refresh token (once) for a new token pair."""
    user, pair = state.auth.refresh(session, refresh_token=data.refresh_token)
    note.actor, note.actor_id = user.username, user.id
    return pair


@router.post("/logout", status_code=204, name="logout")
def logout(principal: PrincipalDep, session: SessionDep, state: StateDep) -> Response:
    """Revoke the token presented (and its refresh token, for a login)."""
    state.auth.logout(session, principal=principal)
    return Response(status_code=204)
