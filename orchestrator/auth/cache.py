"""Authenticated principals, kept per token hash for a few seconds.

Authenticating a bearer token costs three SQL queries (token, user, grants); a client that
polls sends the same token many times a second. :class:`PrincipalCache` keeps the principal
a token resolved to for ``ttl`` seconds (``SERVERGUARD_AUTH_CACHE_TTL``, 5 by default; 0
turns it off), and never past the token's own expiry.

Revocation in this process is immediate: everything that revokes a token or changes who a
user is (logout, token revocation, refresh rotation, password change, disabling, role change,
deletion, grants) drops the entries concerned *after* its commit. A lookup that read the
database before such a change cannot put its stale answer back afterwards: every
invalidation bumps a generation, and :meth:`put` only stores when the generation it saw
before reading is still current.

Re-validation ahead of expiry: past half its life an entry is still served, but
:meth:`lookup` says it is due, and the caller re-reads the database in the background. A
token in steady use is thus never a cache miss, and no request waits on the database
(a miss makes every request in flight with that token wait for one lookup, and a lookup in
a worker thread is slow while the event loop keeps the GIL busy). The bound is unchanged:
an entry never outlives ``ttl`` seconds after the database read it came from, and a failed
re-validation drops it (:meth:`discard`).

Other processes (several uvicorn workers, another orchestrator on the same PostgreSQL) do
not see this process's invalidations: there a revoked token or a disabled user is refused
at the latest ``ttl`` seconds later. Only successful authentications are kept, keyed by the
sha256 of the token (never the token itself), so unknown tokens always reach the database.

Example::

    cache = PrincipalCache(ttl=5.0)
    generation = cache.generation
    principal = ...  # read from the database
    cache.put(token_hash, principal, generation=generation, expires_at=row.expires_at)
    cache.get(token_hash)  # the principal, for 5 s at most
    cache.lookup(token_hash)  # (principal, True) after 2.5 s: re-read it in the background
    cache.forget_user(principal.user_id)  # after the commit that disabled the user
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from orchestrator.auth.principal import Principal
from orchestrator.storage.types import as_utc, utcnow

MAX_ENTRIES = 10_000  # distinct live tokens kept; the oldest entry goes first past that
REFRESH_AFTER = 0.5  # of an entry's lifetime: then it is due for re-validation


class PrincipalCache:
    """Thread-safe: read on the event loop, filled and invalidated from worker threads."""

    def __init__(self, ttl: float, *, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = max(0.0, ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # token hash -> (deadline, re-validation due, principal)
        self._entries: dict[str, tuple[float, float, Principal]] = {}
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    @property
    def generation(self) -> int:
        """Read before a database lookup; hand it to :meth:`put` afterwards."""
        return self._generation

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token_hash: str) -> Principal | None:
        return self.lookup(token_hash)[0]

    def lookup(self, token_hash: str) -> tuple[Principal | None, bool]:
        """``(principal, due)``: the cached principal (None: not cached or expired) and
        whether it is due for re-validation."""
        entry = self._entries.get(token_hash)
        if entry is None:
            return None, False
        now = self._clock()
        if entry[0] <= now:
            with self._lock:
                if self._entries.get(token_hash) is entry:
                    del self._entries[token_hash]
            return None, False
        return entry[2], entry[1] <= now

    def put(self, token_hash: str, principal: Principal, *, generation: int,
            expires_at: datetime | None = None, now: datetime | None = None) -> None:
        """Keep ``principal`` unless something was invalidated since ``generation``."""
        if not self.enabled:
            return
        lifetime = self.ttl
        if expires_at is not None:
            left = (as_utc(expires_at) - (now or utcnow())).total_seconds()
            lifetime = min(lifetime, left)
            if lifetime <= 0:
                return
        now_mono = self._clock()
        entry = (now_mono + lifetime, now_mono + lifetime * REFRESH_AFTER, principal)
        with self._lock:
            if generation != self._generation:
                return
            if token_hash not in self._entries and len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[token_hash] = entry

    def _evict(self) -> None:
        now = self._clock()
        expired = [k for k, (deadline, _due, _p) in self._entries.items() if deadline <= now]
        for key in expired:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:  # still full: the oldest insertion goes
            del self._entries[next(iter(self._entries))]

    # ------------------------------------------------------------------ invalidation

    def _forget(self, match: Callable[[Principal], bool]) -> None:
        with self._lock:
            self._generation += 1
            for key in [k for k, (_d, _due, p) in self._entries.items() if match(p)]:
                del self._entries[key]

    def discard(self, token_hash: str) -> None:
        """The database refused this token (a re-validation found it revoked elsewhere)."""
        with self._lock:
            self._generation += 1
            self._entries.pop(token_hash, None)

    def forget_token(self, token_id: int) -> None:
        self._forget(lambda p: p.token_id == token_id)

    def forget_family(self, family: str) -> None:
        """A login: its access tokens (each refresh rotation keeps the family)."""
        self._forget(lambda p: p.token_family == family)

    def forget_user(self, user_id: int) -> None:
        """Every token of a user: disabled, deleted, new password, new role or grants."""
        self._forget(lambda p: p.user_id == user_id)

    def clear(self) -> None:
        self._forget(lambda p: True)
