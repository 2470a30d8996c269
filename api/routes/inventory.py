"""``POST /inventory/validate``: check a YAML inventory document, line by line."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import AuditDep, OperatorDep
from api.inventory_source import check_document
from api.problems import AUTH_ERRORS
from api.routes import API_PREFIX
from api.schemas import InventoryCheck
from orchestrator.errors import ValidationFailed

router = APIRouter(prefix=f"{API_PREFIX}/inventory", tags=["inventory"], responses=AUTH_ERRORS)

MAX_DOCUMENT = 1024 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "text/plain")
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One YAML inventory document (as `ansible-inventory -i FILE` reads)",
        "content": {t: {"schema": {"type": "string"}} for t in YAML_TYPES[:1] + YAML_TYPES[4:]},
    }
}


@router.post("/validate", response_model=InventoryCheck, name="inventory.validate",
             openapi_extra=_BODY)
async def validate_inventory(request: Request, principal: OperatorDep,
                             note: AuditDep) -> InventoryCheck:
    """Every problem in the document, with its line and column; changes nothing.

    The answer is 200 either way: ``valid`` says whether the inventory can be used.
    """
    note.skip = True  # reads and answers, changes nothing: not an audited action
    body = await request.body()
    if len(body) > MAX_DOCUMENT:
        raise ValidationFailed(f"the document is larger than {MAX_DOCUMENT} bytes",
                               [("body", "too large")])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"the document is not UTF-8 (byte {exc.start})",
                               [("body", "not UTF-8 text")]) from exc
    return await run_in_threadpool(check_document, text)


