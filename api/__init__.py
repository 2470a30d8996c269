"""ServerGuard's HTTP API: ``create_app(settings) -> FastAPI``; see :mod:`api.app`."""

from api.app import create_app

__all__ = ["create_app"]
