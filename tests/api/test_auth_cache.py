"""Authenticated principals are cached per token for a few seconds, and what a user notices:
a revoked token, a disabled user, a new role or a changed grant take effect on the very next
request even while the token's principal is cached; a change this process did not make (a
second worker, direct SQL) is seen once the cache entry expires; a cached token costs no SQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from api_support import PASSWORD, ApiHarness, audit_rows

from api.deps import SingleFlight
from orchestrator.auth.cache import PrincipalCache
from orchestrator.auth.principal import Principal
from orchestrator.auth.service import AuthService
from orchestrator.errors import AuthenticationError
from orchestrator.storage.models import Role, TokenKind
from orchestrator.storage.types import utcnow

ME = "/api/v1/users/me"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def app_auth(api: ApiHarness) -> AuthService:
    app: Any = api.client.app
    auth: AuthService = app.state.serverguard.auth
    return auth


def frozen_cache(api: ApiHarness, ttl: float = 5.0) -> FakeClock:
    """Give the app a principal cache on a clock the test moves."""
    clock = FakeClock()
    app_auth(api).principals = PrincipalCache(ttl, clock=clock)
    return clock


@contextmanager
def sql_statements(api: ApiHarness) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(api.db.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(api.db.engine, "before_cursor_execute", record)


def revoke_behind_the_service(api: ApiHarness) -> None:
    """What another worker's revocation looks like to this one: the row changes, nothing
    tells this process."""
    with api.db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_tokens SET revoked_at = :now"), {"now": utcnow()})


def test_a_cached_token_costs_no_sql_and_the_ttl_bounds_what_it_misses(
        api: ApiHarness) -> None:
    clock = frozen_cache(api)
    assert api.get("view_web", "/api/v1/roles").status_code == 200  # now cached
    with sql_statements(api) as statements:
        assert api.get("view_web", "/api/v1/roles").status_code == 200
    assert statements == []
    revoke_behind_the_service(api)
    clock.now += 2.0  # within the TTL (and not yet due for re-validation): not known yet
    assert api.get("view_web", "/api/v1/roles").status_code == 200
    clock.now += 3.1  # past the TTL: the database is read again, and says no
    r = api.get("view_web", "/api/v1/roles")
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_a_token_in_use_is_revalidated_in_the_background(api: ApiHarness) -> None:
    clock = frozen_cache(api)
    assert api.get("view_web", "/api/v1/roles").status_code == 200  # cached
    revoke_behind_the_service(api)
    clock.now += 3.0  # past half the TTL: still served at once, and re-read meanwhile
    assert api.get("view_web", "/api/v1/roles").status_code == 200
    deadline = time.monotonic() + 10
    while len(app_auth(api).principals) and time.monotonic() < deadline:
        time.sleep(0.01)
    # The background re-validation found the revocation: refused before the TTL is over.
    r = api.get("view_web", "/api/v1/roles")
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_ttl_zero_reads_the_database_on_every_request(api: ApiHarness) -> None:
    app_auth(api).principals = PrincipalCache(0)
    assert api.get("view_web", ME).status_code == 200
    revoke_behind_the_service(api)
    assert api.get("view_web", ME).status_code == 401


def test_logout_refuses_the_cached_token_at_once(api: ApiHarness) -> None:
    frozen_cache(api)
    assert api.get("op_web", ME).status_code == 200
    assert api.post("op_web", "/api/v1/logout").status_code == 204
    r = api.get("op_web", ME)
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_revoking_a_cached_personal_token_refuses_it_at_once(api: ApiHarness) -> None:
    frozen_cache(api)
    created = api.post("view_web", "/api/v1/tokens", json={"name": "ci"}).json()
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert api.client.get(ME, headers=headers).status_code == 200
    assert api.client.get(ME, headers=headers).status_code == 200  # from the cache
    # Revoked by an admin with another token: the owner's cached principal goes too.
    assert api.delete("admin", f"/api/v1/tokens/{created['id']}").status_code == 204
    r = api.client.get(ME, headers=headers)
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"
    # The owner's login token was not touched.
    assert api.get("view_web", ME).status_code == 200


def test_revoking_a_login_by_id_refuses_its_cached_access_token(api: ApiHarness) -> None:
    frozen_cache(api)
    assert api.get("op_web", ME).status_code == 200
    tokens = api.get("op_web", "/api/v1/tokens", params={"kind": "access"}).json()["data"]
    assert api.delete("admin", f"/api/v1/tokens/{tokens[0]['id']}").status_code == 204
    assert api.get("op_web", ME).status_code == 401


def test_a_refresh_ends_the_old_cached_access_token(api: ApiHarness) -> None:
    frozen_cache(api)
    first = api.login("op_web")
    old = {"Authorization": f"Bearer {first['access_token']}"}
    assert api.client.get(ME, headers=old).status_code == 200  # cached
    new = api.client.post("/api/v1/login/refresh",
                          json={"refresh_token": first["refresh_token"]}).json()
    assert api.client.get(ME, headers=old).status_code == 401
    fresh = {"Authorization": f"Bearer {new['access_token']}"}
    assert api.client.get(ME, headers=fresh).status_code == 200  # cached in turn
    # A replayed refresh token ends the login, the cached new access token included.
    replay = api.client.post("/api/v1/login/refresh",
                             json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert api.client.get(ME, headers=fresh).status_code == 401


def test_a_disabled_user_is_refused_at_once(api: ApiHarness) -> None:
    frozen_cache(api)
    personal = api.post("op_web", "/api/v1/tokens", json={"name": "script"}).json()
    script = {"Authorization": f"Bearer {personal['token']}"}
    assert api.get("op_web", ME).status_code == 200
    assert api.client.get(ME, headers=script).status_code == 200
    uid = api.ids["op_web"]
    assert api.patch("admin", f"/api/v1/users/{uid}", json={"is_active": False}).status_code \
        == 200
    assert api.get("op_web", ME).status_code == 401
    assert api.client.get(ME, headers=script).status_code == 401


def test_a_deleted_user_is_refused_at_once(api: ApiHarness) -> None:
    frozen_cache(api)
    assert api.get("op_none", ME).status_code == 200
    assert api.delete("admin", f"/api/v1/users/{api.ids['op_none']}").status_code == 204
    assert api.get("op_none", ME).status_code == 401


def test_a_password_change_ends_the_cached_sessions(api: ApiHarness) -> None:
    frozen_cache(api)
    assert api.get("view_web", ME).status_code == 200
    assert api.post("view_web", "/api/v1/users/me/password", json={
        "current_password": PASSWORD, "new_password": "a brand new secret"}).status_code == 204
    assert api.get("view_web", ME).status_code == 401


def test_a_new_role_applies_to_the_next_request(api: ApiHarness) -> None:
    frozen_cache(api)
    uid = api.ids["op_web"]
    assert api.get("op_web", "/api/v1/users").status_code == 403  # cached as operator
    assert api.patch("admin", f"/api/v1/users/{uid}", json={"role": "admin"}).status_code == 200
    assert api.get("op_web", "/api/v1/users").status_code == 200
    assert api.patch("admin", f"/api/v1/users/{uid}", json={"role": "viewer"}).status_code == 200
    assert api.get("op_web", "/api/v1/users").status_code == 403
    assert api.get("op_web", ME).json()["role"] == "viewer"


def test_grants_apply_to_the_next_request(api: ApiHarness) -> None:
    frozen_cache(api)
    assert api.get("op_web", "/api/v1/hosts/db1").status_code == 404  # cached: web only
    created = api.post("admin", "/api/v1/grants",
                       json={"user_id": api.ids["op_web"], "group": "db"})
    assert created.status_code == 201, created.text
    assert api.get("op_web", "/api/v1/hosts/db1").status_code == 200
    assert api.delete("admin", f"/api/v1/grants/{created.json()['id']}").status_code == 204
    assert api.get("op_web", "/api/v1/hosts/db1").status_code == 404


def test_cached_callers_are_still_audited_by_name(api: ApiHarness) -> None:
    frozen_cache(api)
    for name in ("one", "two"):  # the second request authenticates from the cache
        assert api.post("view_web", "/api/v1/tokens", json={"name": name}).status_code == 201
    created = [e for e in audit_rows(api) if e["action"] == "token.create"]
    assert [(e["actor"], e["result"]) for e in created] == [("view_web", "ok")] * 2


def test_failed_logins_still_lock_while_a_token_is_cached(api: ApiHarness) -> None:
    frozen_cache(api)
    assert api.get("view_web", ME).status_code == 200
    for _ in range(5):
        api.client.post("/api/v1/login", json={"username": "view_web", "password": "bad"})
    right = api.client.post("/api/v1/login", json={"username": "view_web",
                                                   "password": PASSWORD})
    assert right.status_code == 401 and "locked until" in right.json()["detail"]


# ---------------------------------------------------------------------- the cache itself


def principal(user_id: int = 1, token_id: int = 1, family: str = "f1") -> Principal:
    return Principal(user_id=user_id, username=f"u{user_id}", role=Role.VIEWER,
                     groups=frozenset(), token_id=token_id, token_kind=TokenKind.ACCESS,
                     token_family=family)


def test_an_answer_read_before_an_invalidation_is_not_kept() -> None:
    cache = PrincipalCache(5.0)
    generation = cache.generation  # a lookup starts reading the database...
    cache.forget_user(1)  # ...meanwhile the user is disabled and the cache told...
    cache.put("h", principal(), generation=generation)  # ...then the stale answer arrives
    assert cache.get("h") is None
    cache.put("h", principal(), generation=cache.generation)
    assert cache.get("h") == principal()


def test_past_half_its_life_an_entry_is_due_for_revalidation() -> None:
    clock = FakeClock()
    cache = PrincipalCache(5.0, clock=clock)
    cache.put("h", principal(), generation=0)
    assert cache.lookup("h") == (principal(), False)
    clock.now += 2.6
    assert cache.lookup("h") == (principal(), True)
    cache.discard("h")  # the re-validation failed
    assert cache.lookup("h") == (None, False)


def test_an_entry_never_outlives_its_token() -> None:
    clock = FakeClock()
    cache = PrincipalCache(5.0, clock=clock)
    now = utcnow()
    cache.put("h", principal(), generation=0, expires_at=now + timedelta(seconds=1), now=now)
    clock.now += 0.9
    assert cache.get("h") is not None
    clock.now += 0.2
    assert cache.get("h") is None and len(cache) == 0
    cache.put("h", principal(), generation=0, expires_at=now, now=now)  # already expired
    assert cache.get("h") is None


@pytest.mark.parametrize(("forget", "left"), [
    (lambda c: c.forget_token(2), {"a", "c"}),
    (lambda c: c.forget_family("f1"), {"b", "c"}),
    (lambda c: c.forget_user(1), {"c"}),
    (lambda c: c.clear(), set()),
])
def test_invalidation_drops_exactly_the_entries_concerned(forget: Any, left: set[str]) -> None:
    cache = PrincipalCache(5.0)
    cache.put("a", principal(1, 1, "f1"), generation=0)
    cache.put("b", principal(1, 2, "f2"), generation=0)
    cache.put("c", principal(2, 3, "f3"), generation=0)
    forget(cache)
    assert {k for k in "abc" if cache.get(k) is not None} == left


def test_the_cache_is_bounded() -> None:
    cache = PrincipalCache(5.0, max_entries=3)
    for i in range(5):
        cache.put(f"h{i}", principal(token_id=i), generation=0)
    assert len(cache) == 3
    assert cache.get("h0") is None and cache.get("h4") is not None


# ---------------------------------------------------------------------- one lookup at a time


async def test_concurrent_lookups_of_one_key_run_once() -> None:
    flights = SingleFlight()
    gate = threading.Event()
    calls: list[str] = []

    def lookup() -> str:
        calls.append("db")
        gate.wait(5)
        return "alice"

    waiting = [asyncio.ensure_future(flights.run(("principal", "h", 0), lookup))
               for _ in range(20)]
    other = asyncio.ensure_future(flights.run(("principal", "h", 1), lambda: "after revoke"))
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*waiting) == ["alice"] * 20
    assert calls == ["db"]  # twenty requests, one database lookup
    assert await other == "after revoke"  # another generation: its own lookup
    assert await flights.run(("principal", "h", 0), lookup) == "alice"  # done: runs again
    assert calls == ["db", "db"]


async def test_a_failed_lookup_fails_every_waiter() -> None:
    flights = SingleFlight()
    gate = threading.Event()

    def lookup() -> str:
        gate.wait(5)
        raise AuthenticationError("token revoked")

    waiting = [asyncio.ensure_future(flights.run("k", lookup)) for _ in range(3)]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert [str(r) for r in results] == ["token revoked"] * 3


def test_many_concurrent_database_requests_do_not_starve_the_pool(
        sqlite_api: ApiHarness) -> None:
    """Sync routes keep their session's connection until FastAPI has validated the answer in
    a threadpool thread: with more requests than pooled connections in flight, every thread
    could wait for a connection held by a request waiting for a thread (stuck until the
    pool's 30 s timeout). The session gate keeps that from happening."""
    headers = sqlite_api.headers("view_web")
    with ThreadPoolExecutor(max_workers=120) as pool:
        codes = list(pool.map(lambda _i: sqlite_api.client.get(ME, headers=headers).status_code,
                              range(600)))
    assert codes == [200] * 600  # a starved pool times out: 500s
