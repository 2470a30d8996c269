"""Roles (fixed): ``GET /roles``."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import PageDep, PrincipalDep
from api.problems import AUTH_ERRORS
from api.routes import API_PREFIX
from orchestrator.storage.models import ROLE_DESCRIPTIONS, Role, RolePublic, RolesPublic

router = APIRouter(prefix=f"{API_PREFIX}/roles", tags=["users"], responses=AUTH_ERRORS)


@router.get("", response_model=RolesPublic, name="role.list")
def list_roles(principal: PrincipalDep, page: PageDep) -> RolesPublic:
    """The roles, weakest first: each can do what the ones before it can."""
    data = [RolePublic(name=r, rank=r.rank, description=ROLE_DESCRIPTIONS[r]) for r in Role]
    return RolesPublic(data=data[page.skip:page.skip + page.limit], count=len(data))
