"""Errors as problem details (RFC 9457): ``application/problem+json``.

Every error the API returns has ``type``, ``title``, ``status``, ``detail`` (one line naming
the field or resource at fault) and ``instance`` (the request path); validation errors add
``errors: [{field, message}]``. The service's exceptions (``orchestrator.errors``) map to
statuses here, at the boundary, and nowhere else.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from orchestrator.errors import (
    AccountLocked,
    AuthenticationError,
    ConflictError,
    InventoryError,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    ServerGuardError,
    StorageError,
    ValidationFailed,
)

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:serverguard:problem:"


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None
    rule: str | None = None  # policy denials: the deny rule that matched


def problem_response(
    status: int,
    detail: str | None,
    *,
    request: Request,
    kind: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    title = HTTPStatus(status).phrase
    problem = Problem(
        type=f"{TYPE_PREFIX}{kind}" if kind else "about:blank",
        title=title, status=status, detail=detail, instance=request.url.path, errors=errors,
        **extra,
    )
    note = getattr(request.state, "audit", None)
    if note is not None and detail:
        note.error = detail
    return JSONResponse(problem.model_dump(exclude_none=True), status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description,
            "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


# For route decorators: the error answers a route can give, documented in OpenAPI.
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _problem("Malformed request (a body that cannot be parsed)"),
    401: _problem("Missing, invalid, expired or revoked bearer token"),
    403: _problem("The caller's role does not allow this"),
    422: _problem("Invalid request: `errors` names each field at fault"),
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: _problem("No such resource (or not in the caller's scope)"),
}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _problem("Conflicts with the current state")}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: _problem("The inventory or the database is unavailable"),
}


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "body"


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(field=_field(e.get("loc", ())), message=str(e.get("msg", "")))
                  for e in exc.errors()]
        first = errors[0] if errors else None
        detail = f"invalid {first.field}: {first.message}" if first else "invalid request"
        return problem_response(422, detail, request=request, kind="validation",
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        return problem_response(exc.status_code, detail, request=request,
                                headers=getattr(exc, "headers", None))

    @app.exception_handler(ServerGuardError)
    async def service_error(request: Request, exc: ServerGuardError) -> JSONResponse:
        return _service_problem(request, exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error (logged on the server)", request=request,
                                kind="internal")


def _service_problem(request: Request, exc: ServerGuardError) -> JSONResponse:
    detail = str(exc)
    if isinstance(exc, NotFound):
        return problem_response(404, detail, request=request, kind="not-found")
    if isinstance(exc, ValidationFailed):
        errors = [FieldError(field=f, message=m) for f, m in exc.errors] or None
        return problem_response(422, detail, request=request, kind="validation",
                                errors=errors)
    if isinstance(exc, ConflictError):
        return problem_response(409, detail, request=request, kind="conflict")
    if isinstance(exc, AuthenticationError):
        kind = "account-locked" if isinstance(exc, AccountLocked) else "unauthenticated"
        return problem_response(401, detail, request=request, kind=kind,
                                headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, PolicyDenied):
        return problem_response(403, detail, request=request, kind="policy-denied",
                                rule=exc.rule)
    if isinstance(exc, PermissionDenied):
        return problem_response(403, detail, request=request, kind="forbidden")
    if isinstance(exc, InventoryError | StorageError):
        return problem_response(503, detail, request=request, kind="unavailable")
    log.error("unmapped service error on %s: %s", request.url.path, exc)
    return problem_response(500, detail, request=request, kind="internal")
