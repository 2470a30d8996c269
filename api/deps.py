"""Dependencies as short aliases (``SessionDep``, ``PrincipalDep``...), all overridable.

Everything comes from the :class:`ServiceState` the app's lifespan built: no module-level
engine, settings or pool. Tests override ``get_state``, ``get_session`` or
``get_inventory`` through ``app.dependency_overrides``.

Every request goes through some of these, so the ones that neither block nor touch the
database are ``async def``: FastAPI runs a plain ``def`` dependency in its threadpool, and
that hop (a thread hand-off and back, per dependency) was most of the cost of a cheap
request. The bearer token is checked on the event loop when its principal is cached
(:mod:`orchestrator.auth.cache`), in the threadpool only when the database must be asked,
and then once for all the requests that carry the same token meanwhile (:class:`SingleFlight`):
when a busy token's cache entry expires, fifty requests in flight make one lookup, not fifty.

Database sessions are gated (``ServiceState.sessions``): at most as many requests hold one at
once as the connection pool has connections. A sync route keeps its session's connection
until FastAPI has validated its answer, which needs a threadpool thread; without the gate,
under load every thread could sit waiting for a pooled connection held by a request that
waits for a thread (a deadlock until the pool's 30 s timeout). Token lookups run on threads
of their own (``ServiceState.lookups``) for the same reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from api.audit_log import AuditNote
from api.inventory_source import InventorySource
from api.metrics import ServiceMetrics
from inventory import Inventory
from orchestrator.auth.principal import HostScope, Principal
from orchestrator.auth.service import AuthService
from orchestrator.auth.tokens import hash_token
from orchestrator.collection import CollectionService
from orchestrator.errors import AuthenticationError, ValidationFailed
from orchestrator.policy import CommandPolicy
from orchestrator.storage.db import Database
from orchestrator.storage.models import MAX_ID, Role
from orchestrator.storage.recorder import RunRecorder
from orchestrator.storage.settings import ServiceSettings

T = TypeVar("T")
LOOKUP_THREADS = 8  # token lookups at once (each one query set on its own connection)


class SingleFlight:
    """Runs a blocking call in the threadpool (``run``) or a coroutine (``join``) once per key
    at a time: callers that ask for the same key while it runs await that one call (and
    share its result or exception).

    Example::

        flights = SingleFlight()
        inventory = await flights.run("inventory", source.get)
        facts = await flights.join(host, lambda: gather(host))
    """

    def __init__(self, limiter: anyio.CapacityLimiter | None = None) -> None:
        self._limiter = limiter  # None: the shared threadpool's
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, call: Callable[[], T]) -> T:
        self.start(key, call)
        future: asyncio.Future[T] = self._running[key]
        # shield: one caller going away (client disconnected) does not cancel the others'.
        return await asyncio.shield(future)

    async def join(self, key: Hashable, make: Callable[[], Awaitable[T]]) -> T:
        """Like :meth:`run` for a coroutine: ``make()`` is awaited once per key at a time."""
        if key not in self._running:
            self._track(key, asyncio.ensure_future(make()))
        future: asyncio.Future[T] = self._running[key]
        return await asyncio.shield(future)

    def start(self, key: Hashable, call: Callable[[], object]) -> None:
        """Run ``call`` in the background unless it is running already; nobody waits."""
        if key not in self._running:
            self._track(key, asyncio.ensure_future(
                anyio.to_thread.run_sync(call, limiter=self._limiter)))

    def _track(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        self._running[key] = future
        future.add_done_callback(lambda done: self._finished(key, done))

    def _finished(self, key: Hashable, future: asyncio.Future[Any]) -> None:
        if self._running.get(key) is future:
            del self._running[key]
        if not future.cancelled():
            future.exception()  # retrieved, even if every caller went away


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
    flights: SingleFlight = field(default_factory=SingleFlight)  # inventory checks
    # Token lookups, on threads of their own (see the module docstring).
    lookups: SingleFlight = field(
        default_factory=lambda: SingleFlight(anyio.CapacityLimiter(LOOKUP_THREADS)))
    # Host facts being gathered (api.routes.assets): one gathering per host at a time.
    gathering: SingleFlight = field(default_factory=SingleFlight)
    # Requests holding a database session at once: the pool's size (see the module docstring).
    sessions: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = asyncio.Semaphore(pool_capacity(self.db))


def pool_capacity(db: Database) -> int:
    """How many connections ``db``'s pool hands out at once (QueuePool: size + overflow;
    an unbounded or other pool: as many as the threadpool has threads, 40)."""
    pool = db.engine.pool
    size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", None)
    if callable(size) and isinstance(overflow, int) and overflow >= 0:
        return max(1, int(size()) + overflow)
    return 40


async def reject_nul(request: Request) -> None:
    """No NUL in paths or query strings: PostgreSQL cannot store or compare it."""
    if "\x00" in request.url.path:
        raise ValidationFailed("the path contains a NUL character", [("path", "NUL")])
    for key, value in request.query_params.multi_items():
        if "\x00" in key or "\x00" in value:
            raise ValidationFailed(f"query parameter {key!r} contains a NUL character",
                                   [(key.replace("\x00", ""), "contains a NUL character")])


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.serverguard
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_session(state: StateDep) -> AsyncIterator[Session]:
    async with state.sessions:  # see the module docstring: no deadlock on the pool
        opened = state.db.session()
        session = opened.__enter__()  # no I/O: it connects on first use, in the route's thread
        try:
            yield session
        finally:
            # Closing may do I/O (the connection's rollback): in a thread, but not through
            # the shared threadpool's limiter, whose threads may all be waiting for this very
            # connection (as FastAPI closes its own sync generator dependencies).
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(opened.__exit__, None, None, None,
                                               limiter=anyio.CapacityLimiter(1))


SessionDep = Annotated[Session, Depends(get_session)]


async def get_inventory(state: StateDep) -> Inventory | None:
    source = state.inventory
    if not source.sources:
        return None
    # Looking at the files (and reloading them when they changed) blocks: in a thread, and
    # only the first load (or a retry after a failed reload) makes requests wait for it.
    inventory, due = source.cached()
    if inventory is None:
        return await state.flights.run(("inventory",), source.get)
    if due:
        state.flights.start(("inventory",), source.get)
    return inventory


InventoryDep = Annotated[Inventory | None, Depends(get_inventory)]


async def get_audit_note(request: Request) -> AuditNote:
    """The request's audit note (a throwaway one for requests that are not audited)."""
    note = getattr(request.state, "audit", None)
    if note is None:
        note = AuditNote(skip=True)
        request.state.audit = note
    return note


AuditDep = Annotated[AuditNote, Depends(get_audit_note)]

bearer = HTTPBearer(auto_error=False, description="A login's access token or a personal "
                    "API token: `Authorization: Bearer <token>`")


def _authenticate(state: ServiceState, token: str) -> Principal:
    with state.db.session() as session:
        return state.auth.authenticate(session, token=token)


async def current_principal(
    state: StateDep,
    note: AuditDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from the bearer token: cached for a few seconds, else read from the
    database in the threadpool (its own short session: streams hold none)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError("missing bearer token (Authorization: Bearer <token>)")
    token = credentials.credentials
    principal, due = state.auth.cached_principal(token)
    if principal is None or due:
        # Keyed by the cache's generation too: a request that arrives after a revocation
        # never joins a lookup that started before it.
        key = ("principal", hash_token(token), state.auth.principals.generation)
        if principal is None:
            principal = await state.lookups.run(key, lambda: _authenticate(state, token))
        else:  # served from the cache; re-read it meanwhile, nobody waits
            state.lookups.start(key, lambda: _authenticate(state, token))
    note.actor, note.actor_id = principal.username, principal.user_id
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require_role(role: Role, action: str) -> Callable[[Principal], Awaitable[Principal]]:
    async def dependency(principal: PrincipalDep) -> Principal:
        principal.require(role, action)
        return principal

    return dependency


OperatorDep = Annotated[Principal, Depends(require_role(Role.OPERATOR, "this action"))]
AdminDep = Annotated[Principal, Depends(require_role(Role.ADMIN, "this action"))]


async def get_scope(inventory: InventoryDep, principal: PrincipalDep) -> HostScope:
    return HostScope(inventory, principal)


ScopeDep = Annotated[HostScope, Depends(get_scope)]


IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@dataclass(frozen=True, slots=True)
class Page:
    skip: int
    limit: int


async def pagination(
    skip: Annotated[int, Query(ge=0, le=2**31, description="Items to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Items to return")] = 100,
) -> Page:
    return Page(skip, limit)


PageDep = Annotated[Page, Depends(pagination)]
