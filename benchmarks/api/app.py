"""The app uvicorn serves in the API benchmark: settings from ``SERVERGUARD_*`` variables."""

from __future__ import annotations

from fastapi import FastAPI

from api import create_app
from orchestrator.storage.settings import ServiceSettings


def make_app() -> FastAPI:
    return create_app(ServiceSettings())
