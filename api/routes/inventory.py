"""``POST /inventory/validate``: check a YAML inventory document, line by line.
``POST /inventory/reload``: read the service's inventory files again now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import AuditDep, OperatorDep, StateDep
from api.inventory_source import check_document
from api.problems import AUTH_ERRORS, CONFLICT
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


@router.post("/reload", response_model=InventoryCheck, name="inventory.reload",
             responses=CONFLICT)
async def reload_inventory(principal: OperatorDep, state: StateDep,
                           note: AuditDep) -> InventoryCheck:
    """Check the service's inventory files and load them now when they are valid.

    (They are also read again on their own within seconds of a change; this is for not
    waiting, and for seeing the problems.) An inventory with errors is refused (422, each
    error with its file and line) and the service keeps the one it has.
    """
    if not state.inventory.sources:
        raise HTTPException(409, "the service has no inventory files (serve -i INVENTORY)")
    check = await run_in_threadpool(state.inventory.reload)
    note.detail = {"valid": check.valid, "hosts": check.hosts, "errors": len(check.errors)}
    if not check.valid:
        first = check.errors[0].text
        raise ValidationFailed(
            f"inventory not reloaded: {len(check.errors)} error(s), the first: {first}",
            [("inventory", e.text) for e in check.errors])
    return check
