"""The FastAPI app, built by :func:`create_app` (nothing is built at import time).

Example::

    app = create_app(ServiceSettings(inventory=["inventory.yml"]))
    uvicorn.run(app, host="127.0.0.1", port=8080)

The lifespan opens the database (migrating it to the latest schema), the one shared SSH
connection pool and the run recorder, and closes them in reverse order.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.concurrency import run_in_threadpool

from api import problems
from api.audit_log import AuditMiddleware
from api.deps import ServiceState, reject_nul
from api.inventory_source import InventorySource
from api.metrics import MetricsMiddleware, ServiceMetrics
from api.routes import (
    assets,
    audit,
    grants,
    groups,
    health,
    hosts,
    inventory,
    login,
    metrics,
    playbooks,
    roles,
    runs,
    tokens,
    users,
)
from inventory import Inventory
from orchestrator.auth.service import AuthService
from orchestrator.collection import CollectionService
from orchestrator.policy import CommandPolicy
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.storage import runs as run_store
from orchestrator.storage.db import Database
from orchestrator.storage.recorder import RunRecorder
from orchestrator.storage.settings import service_settings

log = logging.getLogger(__name__)

# One router per resource.
RESOURCE_ROUTERS: tuple[APIRouter, ...] = (
    login.router, users.router, roles.router, grants.router, tokens.router, hosts.router,
    groups.router, inventory.router, runs.router, audit.router, metrics.router,
    playbooks.catalog_router, playbooks.router, assets.router,
)


def freeze_startup_heap() -> None:
    """Leave the objects alive now out of the garbage collector's full passes.

    Imported modules (ansible-core above all) are ~150,000 objects that live as long as the
    process; every full collection walked them all, a pause of 50-400 ms for every request
    in flight, every few seconds under load: the API's tail latency. Call it once a serving
    process has built its app (``serverguard serve``, the API benchmark); only the first
    call in a process freezes anything, so tests that build many apps are unaffected.
    """
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def create_app(settings: Settings, *, database: Database | None = None,
               inventory: Inventory | None = None) -> FastAPI:
    """The service's HTTP API.

    ``database`` lets a caller that already opened (and migrated) the database share it,
    as ``serverguard serve`` does after creating the first admin; otherwise the lifespan
    opens the one ``settings`` names. ``inventory``, already read and checked
    (``orchestrator.collection.check_collection``, as ``serverguard serve`` does), is the
    one the collection starts from; otherwise the lifespan reads the files.
    """
    svc = service_settings(settings)
    db = database or Database.from_settings(svc)
    state_holder: dict[str, ServiceState] = {}
    checked: list[Inventory] = [inventory] if inventory is not None else []

    def runs_in_flight() -> float:
        state = state_holder.get("state")
        return float(state.recorder.in_flight) if state else 0.0

    def ssh_connections() -> float:
        state = state_holder.get("state")
        return float(state.recorder.pool.open_connections()) if state else 0.0

    metrics = ServiceMetrics(runs_in_flight=runs_in_flight, ssh_connections=ssh_connections)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(db.migrate)
        if db.is_sqlite:
            # One process owns a SQLite database: runs it left unfinished cannot finish.
            # (On PostgreSQL other orchestrators may own them; leases will decide that.)
            await run_in_threadpool(run_store.fail_interrupted_runs, db)
        async with ConnectionPool(svc) as pool:
            recorder = RunRecorder(db, pool, svc)
            await recorder.start()
            state = ServiceState(
                settings=svc, db=db, auth=AuthService(svc),
                policy=CommandPolicy.default(svc.policy_deny),
                inventory=InventorySource(list(svc.inventory)), recorder=recorder,
                metrics=metrics,
            )
            if svc.collect and svc.inventory:
                state.collection = CollectionService(
                    svc, pool, list(svc.inventory), vm_url=svc.vm_url, pattern=svc.collect_pattern
                )
                # The API's inventory, followed: a change of its files re-plans the sweeps.
                # An inventory checked before the server started is used once: the one
                # the caller vouched for, not a later edit of the files that may not plan.
                first = checked.pop() if checked else await run_in_threadpool(
                    state.inventory.get)
                await state.collection.start(first)
                state.collection.watch(state.inventory.get)
            app.state.serverguard = state
            state_holder["state"] = state
            try:
                yield
            finally:
                if state.collection is not None:
                    await state.collection.stop()
                await recorder.close()
                state_holder.pop("state", None)
        if database is None:
            db.dispose()

    app = FastAPI(
        dependencies=[Depends(reject_nul)],
        title="ServerGuard",
        version="1",
        summary="Agentless operations over SSH: inventory, command runs, audit.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    problems.install(app)
    app.add_middleware(AuditMiddleware, db=db)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    for router in RESOURCE_ROUTERS:
        app.include_router(router)
    app.include_router(health.router)
    return app
