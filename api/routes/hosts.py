"""Hosts of the inventory, within the caller's scope; secret variables masked."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import InventoryDep, PageDep, ScopeDep
from api.inventory_source import find_hosts, host_public, visible_host
from api.problems import AUTH_ERRORS, NOT_FOUND, UNAVAILABLE
from api.routes import API_PREFIX
from api.schemas import HostPublic, HostsPublic

router = APIRouter(prefix=f"{API_PREFIX}/hosts", tags=["inventory"],
                   responses=AUTH_ERRORS | UNAVAILABLE)


@router.get("", response_model=HostsPublic, name="host.list")
def list_hosts(
    inventory: InventoryDep, scope: ScopeDep, page: PageDep,
    pattern: Annotated[str | None, Query(max_length=1000,
                                         description="Ansible host pattern")] = None,
    var: Annotated[list[str] | None, Query(
        description="Variable filter, repeatable: NAME (is set) or NAME=VALUE (non-string "
        "values as JSON: port=22, enabled=true)")] = None,
) -> HostsPublic:
    names = find_hosts(inventory, scope, pattern=pattern, var_filters=var or [])
    shown = names[page.skip:page.skip + page.limit]
    data = [host_public(inventory, n) for n in shown] if inventory is not None else []
    return HostsPublic(data=data, count=len(names))


@router.get("/{name}", response_model=HostPublic, name="host.read", responses=NOT_FOUND)
def read_host(name: str, inventory: InventoryDep, scope: ScopeDep) -> HostPublic:
    """One host; a host outside your groups is not found, exactly like a missing one."""
    return visible_host(inventory, scope, name)
