"""The app uvicorn serves in the API benchmark: settings from ``SERVERGUARD_*`` variables."""

from __future__ import annotations

from fastapi import FastAPI

from api import create_app
from api.app import freeze_startup_heap
from orchestrator.storage.settings import ServiceSettings


def make_app() -> FastAPI:
    app = create_app(ServiceSettings())
    freeze_startup_heap()  # as ``serverguard serve`` does
    return app
