"""Metrics read back from VictoriaMetrics, limited to the hosts the caller may see.

* ``GET /api/v1/metrics/summary``: per host of the caller's scope, ``up``, CPU, memory and
  fullest-filesystem percentages and load1 (nulls for a host without data), paginated.
* ``GET /api/v1/metrics/query`` and ``/query_range``: MetricsQL passthrough (Prometheus
  response shape). For anyone but an admin, VictoriaMetrics applies an ``instance`` filter
  of the caller's hosts to every selector (see :mod:`orchestrator.fleet`).

Where the series are: the running collection's VictoriaMetrics, else ``vm_url``; with
neither, 503. VictoriaMetrics unreachable: 503; a query it rejects: 422 with its message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PageDep, PrincipalDep, ScopeDep, StateDep
from api.problems import AUTH_ERRORS, MEDIA_TYPE, Problem
from api.routes import API_PREFIX
from orchestrator.auth.principal import HostScope, Principal
from orchestrator.errors import MetricsError
from orchestrator.fleet import FleetMetrics, parse_time, range_arguments

NO_BACKEND = ("metrics backend unavailable: collection is off and no vm_url is configured "
              "(start serve with collection, or set SERVERGUARD_VM_URL)")
METRICS_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": Problem,
          "description": "Metrics backend unavailable: not configured, unreachable or failing",
          "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}},
}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One :class:`FleetMetrics` (HTTP connections, summary cache) per VictoriaMetrics URL,
    made on first use and closed with the app."""
    clients: dict[str, FleetMetrics] = {}
    app.state.fleet_metrics = clients
    try:
        yield
    finally:
        for client in clients.values():
            client.close()
        clients.clear()


router = APIRouter(prefix=f"{API_PREFIX}/metrics", tags=["metrics"],
                   responses=AUTH_ERRORS | METRICS_UNAVAILABLE, lifespan=lifespan)


async def get_fleet(request: Request, state: StateDep) -> FleetMetrics:  # no I/O: no thread
    url = state.collection.url if state.collection is not None else state.settings.vm_url
    if not url:
        raise HTTPException(503, NO_BACKEND)
    clients: dict[str, FleetMetrics] = request.app.state.fleet_metrics
    client = clients.get(url)
    if client is None:
        client = clients[url] = FleetMetrics(url)
    return client


FleetDep = Annotated[FleetMetrics, Depends(get_fleet)]


@contextmanager
def backend_errors() -> Iterator[None]:
    try:
        yield
    except MetricsError as exc:
        raise HTTPException(503, f"metrics backend unavailable: {exc}") from exc


def query_hosts(principal: Principal, scope: HostScope) -> list[str] | None:
    """None (unrestricted) for an admin, else the hosts the caller may see."""
    return None if principal.is_admin else scope.hosts()


class HostMetricsPublic(BaseModel):
    host: str
    up: bool | None = Field(description="null: no sample (never swept, or older than 5 min)")
    cpu_percent: float | None
    memory_percent: float | None
    filesystem_percent: float | None = Field(description="the host's fullest filesystem")
    load1: float | None


class HostMetricsList(BaseModel):
    data: list[HostMetricsPublic]
    count: int


class QueryResult(BaseModel):
    """Prometheus' ``data`` object: ``resultType`` (vector, matrix, scalar, string) and
    ``result``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    result_type: str = Field(alias="resultType")
    result: Any


QueryText = Annotated[str, Query(min_length=1, max_length=16_384, description="MetricsQL")]
TimeText = Annotated[str, Query(max_length=64,
                                description="Unix seconds or RFC 3339")]


@router.get("/summary", response_model=HostMetricsList, name="metrics.summary")
async def summary(fleet: FleetDep, scope: ScopeDep, page: PageDep) -> Response:
    """The latest values per host of your scope, in inventory order (cached ~2 s)."""
    with backend_errors():
        snapshot = await fleet.snapshot()
    # The page is rendered once per snapshot and scope: fifty clients polling a 1,000-host
    # fleet then cost one validation and JSON encoding per snapshot, not fifty.
    key = ("summary", scope.inventory, scope.everything, scope.groups, page.skip, page.limit)
    body = snapshot.memo.get(key)
    if body is None:
        rows = snapshot.rows(scope.hosts())
        shown = rows[page.skip:page.skip + page.limit]
        body = snapshot.memo[key] = HostMetricsList(
            data=[HostMetricsPublic.model_validate(r, from_attributes=True) for r in shown],
            count=len(rows)).model_dump_json().encode()
    return Response(content=body, media_type="application/json")


@router.get("/query", response_model=QueryResult, name="metrics.query")
async def query(fleet: FleetDep, principal: PrincipalDep, scope: ScopeDep,
                query: QueryText, time: TimeText | None = None) -> QueryResult:
    """An instant MetricsQL query over the series of your hosts."""
    at = parse_time(time, "time") if time is not None else None
    with backend_errors():
        data = await fleet.query(query, at=at, hosts=query_hosts(principal, scope))
    return QueryResult.model_validate(
        {"resultType": data.get("resultType", ""), "result": data.get("result")})


@router.get("/query_range", response_model=QueryResult, name="metrics.query_range")
async def query_range(fleet: FleetDep, principal: PrincipalDep, scope: ScopeDep,
                      query: QueryText, start: TimeText, end: TimeText,
                      step: Annotated[str, Query(max_length=32, description=(
                          "Seconds or a duration (15s, 1m)"))]) -> QueryResult:
    """A range MetricsQL query over the series of your hosts (at most 11,000 points per
    series)."""
    begin, finish, every = range_arguments(start, end, step)
    with backend_errors():
        data = await fleet.query_range(query, start=begin, end=finish, step=every,
                                       hosts=query_hosts(principal, scope))
    return QueryResult.model_validate(
        {"resultType": data.get("resultType", ""), "result": data.get("result")})
