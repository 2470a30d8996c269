"""``/healthz`` and ``/metrics``: no authentication, outside ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.deps import StateDep
from api.schemas import Health
from orchestrator.errors import StorageError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, name="healthz",
            responses={503: {"model": Health, "description": "The database does not answer"}})
async def healthz(state: StateDep) -> Response:
    """200 when the database answers; 503 (same body) when it does not."""
    try:
        await run_in_threadpool(state.db.check)
        database = "ok"
    except StorageError as exc:
        database = str(exc)
    health = Health(status="ok" if database == "ok" else "unavailable", database=database,
                    inventory=state.inventory.status(),
                    runs_in_flight=state.recorder.in_flight)
    return JSONResponse(health.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/metrics", name="metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
