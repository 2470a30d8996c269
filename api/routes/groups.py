"""Groups of the inventory that hold hosts in the caller's scope."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import InventoryDep, PageDep, ScopeDep
from api.inventory_source import visible_group, visible_groups
from api.problems import AUTH_ERRORS, NOT_FOUND, UNAVAILABLE
from api.routes import API_PREFIX
from api.schemas import GroupPublic, GroupsPublic

router = APIRouter(prefix=f"{API_PREFIX}/groups", tags=["inventory"],
                   responses=AUTH_ERRORS | UNAVAILABLE)


@router.get("", response_model=GroupsPublic, name="group.list")
def list_groups(
    inventory: InventoryDep, scope: ScopeDep, page: PageDep,
    name: Annotated[str | None, Query(max_length=255,
                                      description="Group name, shell wildcards allowed")] = None,
) -> GroupsPublic:
    groups = visible_groups(inventory, scope, name)
    return GroupsPublic(data=groups[page.skip:page.skip + page.limit], count=len(groups))


@router.get("/{name}", response_model=GroupPublic, name="group.read", responses=NOT_FOUND)
def read_group(name: str, inventory: InventoryDep, scope: ScopeDep) -> GroupPublic:
    return visible_group(inventory, scope, name)
