"""Queries on users, grants and API tokens.

Keyword-only arguments; nothing here commits: the caller owns the unit of work (a request,
a login) and commits once, so a login's token rotation or a user's creation with its grants
is all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from orchestrator.errors import ConflictError, NotFound
from orchestrator.storage.models import (
    ApiToken,
    Grant,
    GrantCreate,
    Role,
    TokenKind,
    User,
    UserCreate,
    UserUpdate,
)
from orchestrator.storage.types import utcnow

# ---------------------------------------------------------------------------- users


def get_user(session: Session, *, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_user_by_name(session: Session, *, username: str) -> User | None:
    return session.exec(select(User).where(col(User.username) == username)).first()


def count_users(session: Session) -> int:
    return session.exec(select(func.count()).select_from(User)).one()


def list_users(
    session: Session, *, skip: int = 0, limit: int = 100, role: Role | None = None
) -> tuple[list[User], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    if role is not None:
        conditions.append(col(User.role) == role.value)
    count = session.exec(select(func.count()).select_from(User).where(*conditions)).one()
    rows = session.exec(
        select(User).where(*conditions).order_by(col(User.id)).offset(skip).limit(limit)
    ).all()
    return list(rows), count


def create_user(session: Session, *, data: UserCreate, password_hash: str) -> User:
    user = User.model_validate(data, update={"password_hash": password_hash})
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(f"user {data.username!r} already exists") from exc
    return user


def update_user(
    session: Session, *, user: User, data: UserUpdate, password_hash: str | None = None
) -> User:
    changes = data.model_dump(exclude_unset=True, exclude={"password"})
    user.sqlmodel_update(changes)
    if password_hash is not None:
        user.password_hash = password_hash
    user.updated_at = utcnow()
    session.add(user)
    session.flush()
    return user


def delete_user(session: Session, *, user: User) -> None:
    session.delete(user)
    session.flush()


def count_admins(session: Session, *, active_only: bool = True) -> int:
    query = select(func.count()).select_from(User).where(col(User.role) == Role.ADMIN.value)
    if active_only:
        query = query.where(col(User.is_active))
    return session.exec(query).one()


def record_failed_login(
    session: Session, *, user_id: int, max_failures: int, lockout: timedelta, now: datetime
) -> datetime | None:
    """Count one failed login (atomically); lock the account at ``max_failures``.

    Returns when the lock ends, if this failure locked the account.
    """
    failures = session.execute(
        sa.update(User).where(col(User.id) == user_id)
        .values(failed_logins=col(User.failed_logins) + 1)
        .returning(col(User.failed_logins))
    ).scalar_one()
    if failures < max_failures:
        return None
    until = now + lockout
    session.execute(
        sa.update(User).where(col(User.id) == user_id)
        .values(failed_logins=0, locked_until=until)
    )
    return until


def clear_failed_logins(session: Session, *, user_id: int) -> None:
    session.execute(
        sa.update(User).where(col(User.id) == user_id)
        .values(failed_logins=0, locked_until=None)
    )


# ---------------------------------------------------------------------------- grants


def groups_of(session: Session, *, user_id: int) -> list[str]:
    return list(session.exec(
        select(Grant.group).where(col(Grant.user_id) == user_id).order_by(col(Grant.group))
    ).all())


def groups_of_users(session: Session, *, user_ids: Iterable[int]) -> dict[int, list[str]]:
    ids = list(user_ids)
    found: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = session.exec(
        select(Grant.user_id, Grant.group).where(col(Grant.user_id).in_(ids))
        .order_by(col(Grant.group))
    ).all()
    for user_id, group in rows:
        found[user_id].append(group)
    return found


def list_grants(
    session: Session,
    *,
    skip: int = 0,
    limit: int = 100,
    user_id: int | None = None,
    group: str | None = None,
) -> tuple[list[Grant], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    if user_id is not None:
        conditions.append(col(Grant.user_id) == user_id)
    if group is not None:
        conditions.append(col(Grant.group) == group)
    count = session.exec(select(func.count()).select_from(Grant).where(*conditions)).one()
    rows = session.exec(
        select(Grant).where(*conditions).order_by(col(Grant.id)).offset(skip).limit(limit)
    ).all()
    return list(rows), count


def get_grant(session: Session, *, grant_id: int) -> Grant | None:
    return session.get(Grant, grant_id)


def create_grant(session: Session, *, data: GrantCreate) -> Grant:
    if session.get(User, data.user_id) is None:
        raise NotFound("user", data.user_id)
    grant = Grant.model_validate(data)
    session.add(grant)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(
            f"user {data.user_id} already has a grant on group {data.group!r}"
        ) from exc
    return grant


def delete_grant(session: Session, *, grant: Grant) -> None:
    session.delete(grant)
    session.flush()


# ---------------------------------------------------------------------------- tokens


def add_token(
    session: Session,
    *,
    user_id: int,
    kind: TokenKind,
    token_hash: str,
    prefix: str,
    name: str,
    family: str,
    expires_at: datetime | None,
) -> ApiToken:
    token = ApiToken(
        user_id=user_id, kind=kind, token_hash=token_hash, prefix=prefix, name=name,
        family=family, expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, *, token_hash: str) -> ApiToken | None:
    return session.exec(select(ApiToken).where(col(ApiToken.token_hash) == token_hash)).first()


def get_token(session: Session, *, token_id: int) -> ApiToken | None:
    return session.get(ApiToken, token_id)


def list_tokens(
    session: Session,
    *,
    skip: int = 0,
    limit: int = 100,
    user_id: int | None = None,
    kind: TokenKind | None = None,
    include_revoked: bool = False,
) -> tuple[list[ApiToken], int]:
    conditions: list[sa.ColumnElement[bool]] = []
    if user_id is not None:
        conditions.append(col(ApiToken.user_id) == user_id)
    if kind is not None:
        conditions.append(col(ApiToken.kind) == kind.value)
    if not include_revoked:
        conditions.append(col(ApiToken.revoked_at).is_(None))
    count = session.exec(select(func.count()).select_from(ApiToken).where(*conditions)).one()
    rows = session.exec(
        select(ApiToken).where(*conditions).order_by(col(ApiToken.id)).offset(skip).limit(limit)
    ).all()
    return list(rows), count


def revoke_tokens(
    session: Session,
    *,
    now: datetime,
    token_id: int | None = None,
    family: str | None = None,
    user_id: int | None = None,
) -> int:
    """Revoke one token, a login's family, or every token of a user; returns how many."""
    conditions: list[sa.ColumnElement[bool]] = [col(ApiToken.revoked_at).is_(None)]
    if token_id is not None:
        conditions.append(col(ApiToken.id) == token_id)
    if family is not None:
        conditions.append(col(ApiToken.family) == family)
    if user_id is not None:
        conditions.append(col(ApiToken.user_id) == user_id)
    if len(conditions) == 1:
        raise ValueError("revoke_tokens needs token_id, family or user_id")
    result = session.execute(sa.update(ApiToken).where(*conditions).values(revoked_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def touch_token(session: Session, *, token_id: int, now: datetime) -> None:
    session.execute(
        sa.update(ApiToken).where(col(ApiToken.id) == token_id).values(last_used_at=now)
    )
