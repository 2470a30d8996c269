"""Every state-changing request lands in the audit chain, whatever its outcome.

The middleware gives each POST/PUT/PATCH/DELETE an :class:`AuditNote` (``request.state.audit``)
that the auth dependency and the route fill in (who, target, hosts, detail); when the
response starts, before the client sees it, the note is appended to the chain: who, from
which address, what (the route's name, e.g. ``run.create``), on which hosts, when, result.
Request bodies are never recorded (they hold passwords).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator import audit
from orchestrator.storage.db import Database
from orchestrator.storage.models import AuditEntryCreate

log = logging.getLogger(__name__)

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class AuditNote:
    """What a route knows about the request, for its audit entry."""

    actor: str | None = None
    actor_id: int | None = None
    target: str | None = None
    hosts: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skip: bool = False  # validation-only endpoints that change nothing


def result_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    return "rejected" if status < 500 else "error"


class AuditMiddleware:
    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in AUDITED_METHODS:
            await self.app(scope, receive, send)
            return
        note = AuditNote()
        scope.setdefault("state", {})["audit"] = note
        recorded = False

        async def record(status: int) -> None:
            nonlocal recorded
            if recorded or note.skip:
                return
            recorded = True
            await asyncio.to_thread(audit.append, self.db, self._entry(scope, note, status))

        async def send_after_audit(message: Message) -> None:
            if message["type"] == "http.response.start":
                await record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_after_audit)
        except BaseException:
            await record(500)
            raise

    @staticmethod
    def _entry(scope: Scope, note: AuditNote, status: int) -> AuditEntryCreate:
        route = scope.get("route")
        action = getattr(route, "name", None) if route is not None else None
        path = scope.get("path", "")
        client = scope.get("client")
        detail: dict[str, Any] = {"method": scope["method"], "path": path, "status": status,
                                  **note.detail}
        if note.error and status >= 400:
            detail["error"] = note.error
        return AuditEntryCreate(
            actor=note.actor, actor_id=note.actor_id,
            source=client[0] if client else None,
            action=action or f"{scope['method']} {path}"[:64],
            target=note.target, hosts=note.hosts, result=result_of(status), detail=detail,
        )
