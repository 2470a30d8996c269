"""The asset view: host facts gathered over SSH and cached (:mod:`orchestrator.facts`).

* ``GET /api/v1/hosts/{name}/facts``: one host's facts, from the cache when they are at most
  ``max_age`` seconds old, else gathered now (one SSH command) and cached. A host that cannot
  be reached answers 502, or its cached facts marked ``stale`` with the ``error`` when it
  has some.
* ``GET /api/v1/assets``: every host of the caller's scope (filtered by pattern, paginated)
  with its cached facts (``null`` when never gathered); ``gather=true`` gathers those of the
  page that are missing or older than ``max_age`` first, at most ``GATHER_AT_ONCE`` at once.

Facts are plain readings (no secret), shown to every role within its scope. Concurrent
requests for the same host share one gathering.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api.deps import InventoryDep, PageDep, ScopeDep, StateDep
from api.inventory_source import find_hosts, visible_host
from api.problems import AUTH_ERRORS, NOT_FOUND, UNAVAILABLE, _problem
from api.routes import API_PREFIX
from inventory import Inventory
from orchestrator.errors import SSHError
from orchestrator.facts import FACTS_COMMAND, HostFacts, parse_facts
from orchestrator.storage import facts as facts_store
from orchestrator.storage.types import utcnow

GATHER_TIMEOUT = 20.0  # seconds for the facts command on one host
GATHER_AT_ONCE = 20
MAX_AGE_DEFAULT = 600
UNREACHABLE: dict[int | str, dict[str, Any]] = {
    502: _problem("The host could not be reached or did not answer"),
}

router = APIRouter(prefix=API_PREFIX, tags=["assets"], responses=AUTH_ERRORS | UNAVAILABLE)

MaxAge = Annotated[int, Query(ge=0, le=30 * 86400, description=(
    "Seconds cached facts stay good enough; older ones are gathered again (0: always)"))]


class HostFactsPublic(HostFacts):
    host: str
    gathered_at: datetime
    stale: bool = Field(False, description="gathering again failed: these are older facts")
    error: str | None = Field(None, description="why gathering failed (with stale)")


class AssetPublic(BaseModel):
    host: str
    facts: HostFactsPublic | None = Field(description="null: never gathered")
    error: str | None = Field(None, description="why gathering failed just now (gather=true)")


class AssetsPublic(BaseModel):
    data: list[AssetPublic]
    count: int


class GatherFailed(Exception):
    """The facts command could not run on the host (the message says why)."""


def _public(host: str, gathered_at: datetime, facts: dict[str, Any],
            error: str | None = None) -> HostFactsPublic:
    return HostFactsPublic.model_validate(
        {**facts, "host": host, "gathered_at": gathered_at, "stale": error is not None,
         "error": error})


async def _gather(state: Any, inventory: Inventory, host: str) -> tuple[datetime, dict[str, Any]]:
    """Run the facts command on ``host`` and cache what it printed; GatherFailed if not.
    Concurrent requests for one host share one gathering."""
    return await state.gathering.join(host, lambda: _gather_now(state, inventory, host))


async def _gather_now(state: Any, inventory: Inventory,
                      host: str) -> tuple[datetime, dict[str, Any]]:
    target = inventory.targets([host], default_policy=state.settings.host_key_policy)[0]
    try:
        result = await state.recorder.pool.run(target, FACTS_COMMAND, timeout=GATHER_TIMEOUT)
    except SSHError as exc:
        raise GatherFailed(str(exc)) from exc
    if result.error:
        raise GatherFailed(f"{host}: {result.error}")
    facts = parse_facts(result.stdout).model_dump()
    gathered_at = utcnow()

    def save() -> None:
        with state.db.session() as session:
            facts_store.save_facts(session, host=host, facts=facts, gathered_at=gathered_at)
            session.commit()

    await anyio.to_thread.run_sync(save)
    return gathered_at, facts


def _cached(state: Any, hosts: list[str]) -> dict[str, tuple[datetime, dict[str, Any]]]:
    with state.db.session() as session:
        rows = facts_store.facts_of(session, hosts=hosts)
        return {h: (r.gathered_at, dict(r.facts)) for h, r in rows.items()}


def _fresh(gathered_at: datetime, max_age: int) -> bool:
    return max_age > 0 and utcnow() - gathered_at <= timedelta(seconds=max_age)


@router.get("/hosts/{name}/facts", response_model=HostFactsPublic, name="host.facts",
            responses=NOT_FOUND | UNREACHABLE)
async def host_facts(name: str, inventory: InventoryDep, scope: ScopeDep, state: StateDep,
                     max_age: MaxAge = MAX_AGE_DEFAULT) -> HostFactsPublic:
    """One host's facts (OS, kernel, CPU model and count, memory, disks, addresses, uptime),
    gathered over SSH when the cached ones are older than ``max_age`` seconds."""
    visible_host(inventory, scope, name)  # 404 outside the scope, as a missing host
    assert inventory is not None
    cached = (await anyio.to_thread.run_sync(_cached, state, [name])).get(name)
    if cached is not None and _fresh(cached[0], max_age):
        return _public(name, *cached)
    try:
        return _public(name, *await _gather(state, inventory, name))
    except GatherFailed as exc:
        if cached is not None:
            return _public(name, *cached, error=str(exc))
        raise HTTPException(502, str(exc)) from None


@router.get("/assets", response_model=AssetsPublic, name="asset.list")
async def list_assets(
    inventory: InventoryDep, scope: ScopeDep, page: PageDep, state: StateDep,
    pattern: Annotated[str | None, Query(max_length=1000,
                                         description="Ansible host pattern")] = None,
    gather: Annotated[bool, Query(description=(
        "Gather the facts of this page's hosts that are missing or older than max_age"))] = False,
    max_age: MaxAge = MAX_AGE_DEFAULT,
) -> AssetsPublic:
    """The asset view: the hosts of your scope with their cached facts."""
    names = find_hosts(inventory, scope, pattern=pattern, var_filters=[])
    shown = names[page.skip:page.skip + page.limit]
    cached = await anyio.to_thread.run_sync(_cached, state, shown)
    errors: dict[str, str] = {}
    if gather and inventory is not None:
        due = [h for h in shown if h not in cached or not _fresh(cached[h][0], max_age)]
        slots = asyncio.Semaphore(GATHER_AT_ONCE)

        async def one(host: str) -> None:
            async with slots:
                try:
                    cached[host] = await _gather(state, inventory, host)
                except GatherFailed as exc:
                    errors[host] = str(exc)

        await asyncio.gather(*(one(h) for h in due))
    data = []
    for host in shown:
        got = cached.get(host)
        facts = _public(host, *got, error=errors.get(host)) if got is not None else None
        data.append(AssetPublic(host=host, facts=facts, error=errors.get(host)))
    return AssetsPublic(data=data, count=len(names))
