"""Users: admins manage them; everyone reads and re-keys their own account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session

from api.deps import AdminDep, AuditDep, IdPath, PageDep, PrincipalDep, SessionDep, StateDep
from api.problems import AUTH_ERRORS, CONFLICT, NOT_FOUND
from api.routes import API_PREFIX
from orchestrator.errors import NotFound
from orchestrator.storage import accounts
from orchestrator.storage.models import (
    PasswordChange,
    Role,
    User,
    UserCreate,
    UserPublic,
    UsersPublic,
    UserUpdate,
)

router = APIRouter(prefix=f"{API_PREFIX}/users", tags=["users"], responses=AUTH_ERRORS)


def public(session: Session, user: User) -> UserPublic:
    assert user.id is not None
    return UserPublic.model_validate(
        user, update={"groups": accounts.groups_of(session, user_id=user.id)}
    )


def _user(session: Session, user_id: int) -> User:
    user = accounts.get_user(session, user_id=user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


@router.get("", response_model=UsersPublic, name="user.list")
def list_users(
    principal: AdminDep, session: SessionDep, page: PageDep,
    role: Annotated[Role | None, Query()] = None,
) -> UsersPublic:
    users, count = accounts.list_users(session, skip=page.skip, limit=page.limit, role=role)
    groups = accounts.groups_of_users(session, user_ids=[u.id for u in users if u.id])
    data = [UserPublic.model_validate(u, update={"groups": groups.get(u.id or 0, [])})
            for u in users]
    return UsersPublic(data=data, count=count)


@router.post("", response_model=UserPublic, status_code=201, name="user.create",
             responses=CONFLICT)
def create_user(data: UserCreate, principal: AdminDep, session: SessionDep, state: StateDep,
                note: AuditDep) -> UserPublic:
    note.target = f"user:{data.username}"
    note.detail = {"role": data.role.value}
    user = state.auth.create_user(session, data=data)
    return public(session, user)


@router.get("/me", response_model=UserPublic, name="user.me")
def read_me(principal: PrincipalDep, session: SessionDep) -> UserPublic:
    return public(session, _user(session, principal.user_id))


@router.post("/me/password", status_code=204, name="user.password")
def change_password(data: PasswordChange, principal: PrincipalDep, session: SessionDep,
                    state: StateDep, note: AuditDep) -> Response:
    """Change your own password; every session of yours ends (sign in again)."""
    note.target = f"user:{principal.username}"
    state.auth.change_password(session, principal=principal, data=data)
    return Response(status_code=204)


@router.get("/{user_id}", response_model=UserPublic, name="user.read", responses=NOT_FOUND)
def read_user(user_id: IdPath, principal: PrincipalDep, session: SessionDep) -> UserPublic:
    """Admins read anyone; others only themselves (anyone else is not found)."""
    if user_id != principal.user_id and not principal.is_admin:
        raise NotFound("user", user_id)
    return public(session, _user(session, user_id))


@router.patch("/{user_id}", response_model=UserPublic, name="user.update",
              responses=NOT_FOUND | CONFLICT)
def update_user(user_id: IdPath, data: UserUpdate, principal: AdminDep, session: SessionDep,
                state: StateDep, note: AuditDep) -> UserPublic:
    """Change a user's role, name, state or password (a new password or disabling the
    account ends all of that user's sessions)."""
    user = _user(session, user_id)
    note.target = f"user:{user.username}"
    note.detail = {"changed": sorted(data.model_dump(exclude_unset=True))}
    state.auth.update_user(session, principal=principal, user=user, data=data)
    return public(session, user)


@router.delete("/{user_id}", status_code=204, name="user.delete",
               responses=NOT_FOUND | CONFLICT)
def delete_user(user_id: IdPath, principal: AdminDep, session: SessionDep, state: StateDep,
                note: AuditDep) -> Response:
    user = _user(session, user_id)
    note.target = f"user:{user.username}"
    state.auth.delete_user(session, principal=principal, user=user)
    return Response(status_code=204)
