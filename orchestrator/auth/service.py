"""Sign-in and accounts: logins with lockout, token issue/refresh/revoke, users, first admin.

Every function takes the caller's session and commits its own unit of work.

* A login returns a short-lived access token and a refresh token (one *family*). Refresh
  tokens rotate: each is good once; presenting a used one again revokes the whole family
  (someone replayed a stolen token). Logout revokes the family of the token presented.
* ``login_max_failures`` failed logins in a row lock the account for ``login_lockout``
  seconds; during the lock even the right password is refused. An unknown user name costs
  the same time as a wrong password and gets the same answer.
* Personal tokens are shown once at creation and stored as a sha256.
* A token's principal is kept for ``auth_cache_ttl`` seconds (:mod:`orchestrator.auth.cache`);
  every method here that revokes a token or changes a user or their grants drops the cached
  principals concerned right after its commit, so this process refuses them at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from orchestrator.auth.cache import PrincipalCache
from orchestrator.auth.passwords import Passwords, random_password
from orchestrator.auth.principal import Principal
from orchestrator.auth.tokens import SHOWN_PREFIX, hash_token, new_family, new_token
from orchestrator.errors import (
    AccountLocked,
    AuthenticationError,
    ConflictError,
    NotFound,
    PermissionDenied,
)
from orchestrator.storage import accounts
from orchestrator.storage.models import (
    ApiToken,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenPublic,
    Grant,
    GrantCreate,
    PasswordChange,
    Role,
    TokenKind,
    TokenPair,
    User,
    UserCreate,
    UserUpdate,
)
from orchestrator.storage.settings import ServiceSettings
from orchestrator.storage.types import as_utc, utcnow

BOOTSTRAP_ADMIN = "admin"
TOUCH_EVERY = timedelta(seconds=60)  # last_used_at is written at most this often


class AuthService:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.passwords = Passwords(settings)
        self.principals = PrincipalCache(settings.auth_cache_ttl)

    # ------------------------------------------------------------------------ login

    def login(
        self, session: Session, *, username: str, password: str, now: datetime | None = None
    ) -> tuple[User, TokenPair]:
        """Check the password and issue a token pair; failures count towards the lock."""
        now = now or utcnow()
        user = accounts.get_user_by_name(session, username=username)
        if user is None or not user.is_active:
            self.passwords.burn(password)
            raise AuthenticationError("wrong user name or password")
        assert user.id is not None
        if user.locked_until is not None and as_utc(user.locked_until) > now:
            raise AccountLocked(user.username, _fmt(user.locked_until))
        if not self.passwords.verify(user.password_hash, password):
            until = accounts.record_failed_login(
                session, user_id=user.id, max_failures=self.settings.login_max_failures,
                lockout=timedelta(seconds=self.settings.login_lockout), now=now,
            )
            session.commit()
            if until is not None:
                raise AccountLocked(user.username, _fmt(until))
            raise AuthenticationError("wrong user name or password")
        if user.failed_logins or user.locked_until is not None:
            accounts.clear_failed_logins(session, user_id=user.id)
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = self.passwords.hash(password)
            session.add(user)
        pair = self._issue_pair(session, user=user, now=now)
        session.commit()
        return user, pair

    def refresh(
        self, session: Session, *, refresh_token: str, now: datetime | None = None
    ) -> tuple[User, TokenPair]:
        now = now or utcnow()
        token = accounts.find_token(session, token_hash=hash_token(refresh_token))
        if token is None or token.kind != TokenKind.REFRESH:
            raise AuthenticationError("invalid refresh token")
        if token.revoked_at is not None:
            # A used refresh token came back: assume theft, end that whole login.
            accounts.revoke_tokens(session, family=token.family, now=now)
            session.commit()
            self.principals.forget_family(token.family)
            raise AuthenticationError("refresh token already used or revoked; "
                                      "that login has been ended")
        if token.expires_at is not None and as_utc(token.expires_at) <= now:
            raise AuthenticationError("refresh token expired")
        user = accounts.get_user(session, user_id=token.user_id)
        if user is None or not user.is_active:
            raise AuthenticationError("invalid refresh token")
        accounts.revoke_tokens(session, family=token.family, now=now)
        pair = self._issue_pair(session, user=user, now=now, family=token.family)
        session.commit()
        self.principals.forget_family(token.family)  # the old access token ends here
        return user, pair

    def _issue_pair(
        self, session: Session, *, user: User, now: datetime, family: str | None = None
    ) -> TokenPair:
        assert user.id is not None
        family = family or new_family()
        access, refresh = new_token(TokenKind.ACCESS), new_token(TokenKind.REFRESH)
        access_ttl = int(self.settings.access_token_ttl)
        refresh_ttl = int(self.settings.refresh_token_ttl)
        for token, kind, ttl in ((access, TokenKind.ACCESS, access_ttl),
                                 (refresh, TokenKind.REFRESH, refresh_ttl)):
            accounts.add_token(
                session, user_id=user.id, kind=kind, token_hash=hash_token(token),
                prefix=token[:SHOWN_PREFIX], name=f"{kind.value} token", family=family,
                expires_at=now + timedelta(seconds=ttl),
            )
        return TokenPair(access_token=access, refresh_token=refresh, expires_in=access_ttl,
                         refresh_expires_in=refresh_ttl)

    # ------------------------------------------------------------------------ requests

    def cached_principal(self, token: str) -> tuple[Principal | None, bool]:
        """``(principal, due)`` without touching the database: the principal ``token``
        resolved to less than ``auth_cache_ttl`` seconds ago and that nothing revoked since
        (else None), and whether it is due for re-validation (:meth:`authenticate` again,
        in the background)."""
        if not self.principals.enabled:
            return None, False
        return self.principals.lookup(hash_token(token))

    def authenticate(
        self, session: Session, *, token: str, now: datetime | None = None
    ) -> Principal:
        """The principal behind a bearer token (access or personal), from the database;
        a success is cached (see :meth:`cached_principal`)."""
        now = now or utcnow()
        generation = self.principals.generation  # before reading: see PrincipalCache.put
        token_hash = hash_token(token)
        try:
            principal, expires_at = self._principal(session, token_hash=token_hash, now=now)
        except AuthenticationError:
            self.principals.discard(token_hash)  # were it cached: re-validation failed
            raise
        self.principals.put(token_hash, principal, generation=generation,
                            expires_at=expires_at, now=now)
        return principal

    def _principal(
        self, session: Session, *, token_hash: str, now: datetime
    ) -> tuple[Principal, datetime | None]:
        row = accounts.find_token(session, token_hash=token_hash)
        if row is None or row.kind == TokenKind.REFRESH:
            raise AuthenticationError("invalid token")
        if row.revoked_at is not None:
            raise AuthenticationError("token revoked")
        if row.expires_at is not None and as_utc(row.expires_at) <= now:
            raise AuthenticationError("token expired")
        user = accounts.get_user(session, user_id=row.user_id)
        if user is None or not user.is_active:
            raise AuthenticationError("invalid token")
        assert user.id is not None and row.id is not None
        if row.last_used_at is None or now - as_utc(row.last_used_at) > TOUCH_EVERY:
            accounts.touch_token(session, token_id=row.id, now=now)
            session.commit()
        principal = Principal(
            user_id=user.id, username=user.username, role=Role(user.role),
            groups=frozenset(accounts.groups_of(session, user_id=user.id)),
            token_id=row.id, token_kind=TokenKind(row.kind), token_family=row.family,
        )
        return principal, row.expires_at

    def logout(self, session: Session, *, principal: Principal) -> int:
        """Revoke the presented token and, for a login, its refresh token."""
        now = utcnow()
        if principal.token_kind == TokenKind.PERSONAL:
            count = accounts.revoke_tokens(session, token_id=principal.token_id, now=now)
            session.commit()
            self.principals.forget_token(principal.token_id)
        else:
            count = accounts.revoke_tokens(session, family=principal.token_family, now=now)
            session.commit()
            self.principals.forget_family(principal.token_family)
        return count

    # ------------------------------------------------------------------------ tokens

    def create_personal_token(
        self, session: Session, *, principal: Principal, data: ApiTokenCreate
    ) -> ApiTokenCreated:
        now = utcnow()
        token = new_token(TokenKind.PERSONAL)
        expires = None
        if data.expires_in_days is not None:
            expires = now + timedelta(days=data.expires_in_days)
        row = accounts.add_token(
            session, user_id=principal.user_id, kind=TokenKind.PERSONAL,
            token_hash=hash_token(token), prefix=token[:SHOWN_PREFIX], name=data.name,
            family=new_family(), expires_at=expires,
        )
        session.commit()
        public = ApiTokenPublic.model_validate(row)
        return ApiTokenCreated(**public.model_dump(), token=token)

    def visible_token(self, session: Session, *, principal: Principal, token_id: int) -> ApiToken:
        """A token of the caller's (any token for an admin); others are not found."""
        row = accounts.get_token(session, token_id=token_id)
        if row is None or (row.user_id != principal.user_id and not principal.is_admin):
            raise NotFound("token", token_id)
        return row

    def revoke_token(self, session: Session, *, principal: Principal, token_id: int) -> ApiToken:
        row = self.visible_token(session, principal=principal, token_id=token_id)
        if row.revoked_at is None:
            if row.kind == TokenKind.PERSONAL:
                accounts.revoke_tokens(session, token_id=token_id, now=utcnow())
                session.commit()
                self.principals.forget_token(token_id)
            else:
                accounts.revoke_tokens(session, family=row.family, now=utcnow())
                session.commit()
                self.principals.forget_family(row.family)
            session.refresh(row)
        return row

    # ------------------------------------------------------------------------ users

    def create_user(self, session: Session, *, data: UserCreate) -> User:
        user = accounts.create_user(session, data=data,
                                    password_hash=self.passwords.hash(data.password))
        session.commit()
        return user

    def update_user(
        self, session: Session, *, principal: Principal, user: User, data: UserUpdate
    ) -> User:
        assert user.id is not None
        demoting = data.role is not None and data.role != Role.ADMIN
        disabling = data.is_active is False
        if (user.role == Role.ADMIN and (demoting or disabling)
                and accounts.count_admins(session) <= 1):
            raise ConflictError(f"user {user.username!r} is the last active admin")
        password_hash = self.passwords.hash(data.password) if data.password else None
        accounts.update_user(session, user=user, data=data, password_hash=password_hash)
        if password_hash is not None or disabling:
            # New password or disabled account: every session of that user ends.
            accounts.revoke_tokens(session, user_id=user.id, now=utcnow())
        session.commit()
        # Whatever changed (role, state, name), the user's cached principals are stale.
        self.principals.forget_user(user.id)
        return user

    def delete_user(self, session: Session, *, principal: Principal, user: User) -> None:
        if user.id == principal.user_id:
            raise ConflictError("you cannot delete your own account")
        if user.role == Role.ADMIN and user.is_active and accounts.count_admins(session) <= 1:
            raise ConflictError(f"user {user.username!r} is the last active admin")
        user_id = user.id
        accounts.delete_user(session, user=user)
        session.commit()
        if user_id is not None:
            self.principals.forget_user(user_id)

    def change_password(
        self, session: Session, *, principal: Principal, data: PasswordChange
    ) -> None:
        user = accounts.get_user(session, user_id=principal.user_id)
        assert user is not None and user.id is not None
        if not self.passwords.verify(user.password_hash, data.current_password):
            raise PermissionDenied("the current password is wrong")
        user.password_hash = self.passwords.hash(data.new_password)
        user.updated_at = utcnow()
        session.add(user)
        # Every session of the user ends, this one included: sign in with the new password.
        accounts.revoke_tokens(session, user_id=user.id, now=utcnow())
        session.commit()
        self.principals.forget_user(user.id)

    # ------------------------------------------------------------------------ grants

    def create_grant(self, session: Session, *, data: GrantCreate) -> Grant:
        """Grant a user an inventory group; their next request sees it."""
        grant = accounts.create_grant(session, data=data)
        session.commit()
        self.principals.forget_user(data.user_id)
        return grant

    def delete_grant(self, session: Session, *, grant: Grant) -> None:
        """Take a group back; the user's next request no longer sees its hosts."""
        user_id = grant.user_id
        accounts.delete_grant(session, grant=grant)
        session.commit()
        self.principals.forget_user(user_id)

    def ensure_admin(self, session: Session) -> tuple[str, str] | None:
        """On first start (no users at all) create an admin with a random password.

        Returns ``(username, password)`` when it did: the caller shows it once; it is
        never logged or stored in clear.
        """
        if accounts.count_users(session) > 0:
            return None
        password = random_password()
        self.create_user(session, data=UserCreate(
            username=BOOTSTRAP_ADMIN, full_name="first administrator", role=Role.ADMIN,
            password=password,
        ))
        return BOOTSTRAP_ADMIN, password


def _fmt(moment: datetime) -> str:
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")
