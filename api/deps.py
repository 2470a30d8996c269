"""Dependencies as short aliases (``SessionDep``, ``PrincipalDep``...), all overridable.

Everything comes from the :class:`ServiceState` the app's lifespan built: no module-level
engine, settings or pool. Tests override ``get_state``, ``get_session`` or
``get_inventory`` through ``app.dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.audit_log import AuditNote
from api.inventory_source import InventorySource
from api.metrics import ServiceMetrics
from inventory import Inventory
from orchestrator.auth.principal import HostScope, Principal
from orchestrator.auth.service import AuthService
from orchestrator.collection import CollectionService
from orchestrator.errors import AuthenticationError, ValidationFailed
from orchestrator.policy import CommandPolicy
from orchestrator.storage.db import Database
from orchestrator.storage.models import MAX_ID, Role
from orchestrator.storage.recorder import RunRecorder
from orchestrator.storage.settings import ServiceSettings


@dataclass
class ServiceState:
    """What the app's lifespan built; one per app."""

    settings: ServiceSettings
    db: Database
    auth: AuthService
    policy: CommandPolicy
    inventory: InventorySource
    recorder: RunRecorder
    metrics: ServiceMetrics
    collection: CollectionService | None = None  # None: serve --no-collect, or no inventory


def reject_nul(request: Request) -> None:
    """No NUL in paths or query strings: PostgreSQL cannot store or compare it."""
    if "\x00" in request.url.path:
        raise ValidationFailed("the path contains a NUL character", [("path", "NUL")])
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise ValidationFailed(f"query parameter {key!r} contains a NUL character",
                                   [(key.replace("\x00", ""), "contains a NUL character")])


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.serverguard
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_inventory(state: StateDep) -> Inventory | None:
    return state.inventory.get()


InventoryDep = Annotated[Inventory | None, Depends(get_inventory)]


def get_audit_note(request: Request) -> AuditNote:
    """The request's audit note (a throwaway one for requests that are not audited)."""
    note = getattr(request.state, "audit", None)
    if note is None:
        note = AuditNote(skip=True)
        request.state.audit = note
    return note


AuditDep = Annotated[AuditNote, Depends(get_audit_note)]

bearer = HTTPBearer(auto_error=False, description="A login's access token or a personal "
                    "API token: `Authorization: Bearer <token>`")


def current_principal(
    state: StateDep,
    note: AuditDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from the bearer token (its own short session: streams hold none)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token (Authorization: Bearer <token>)")
    with state.db.session() as session:
        principal = state.auth.authenticate(session, token=credentials.credentials)
    note.actor, note.actor_id = principal.username, principal.user_id
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(role: Role, action: str) -> Callable[[Principal], Principal]:
    def dependency(principal: PrincipalDep) -> Principal:
        principal.require(role, action)
        return principal

    return dependency


OperatorDep = Annotated[Principal, Depends(require_role(Role.OPERATOR, "this action"))]
AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN, "this action"))]


def get_scope(inventory: InventoryDep, principal: PrincipalDep) -> HostScope:
    return HostScope(inventory, principal)


ScopeDep = Annotated[HostScope, Depends(get_scope)]


IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@dataclass(frozen=True, slots=True)
class Page:
    skip: int
    limit: int


def pagination(
    skip: Annotated[int, Query(ge=0, le=2**31, description="Items to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items to return")] = 100,
) -> Page:
    return Page(skip, limit)


PageDep = Annotated[Page, Depends(pagination)]
