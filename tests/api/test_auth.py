"""Sign-in: login, lockout, refresh rotation, logout and token revocation, first admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from api_support import PASSWORD, ApiHarness, audit_rows

from orchestrator.auth.service import AuthService
from orchestrator.storage import accounts
from orchestrator.storage.models import Role
from orchestrator.storage.types import utcnow


def test_login_gives_a_working_token_pair(api: ApiHarness) -> None:
    pair = api.login("op_web")
    assert pair["token_type"] == "bearer"
    assert pair["access_token"].startswith("sga_")
    assert pair["refresh_token"].startswith("sgr_")
    assert pair["expires_in"] == 15 * 60
    me = api.get("op_web", "/api/v1/users/me")
    assert me.status_code == 200
    assert me.json()["username"] == "op_web"
    assert me.json()["groups"] == ["web"]
    assert "password_hash" not in me.json()


def test_wrong_password_and_unknown_user_look_the_same(api: ApiHarness) -> None:
    wrong = api.client.post("/api/v1/login", json={"username": "op_web", "password": "nope"})
    unknown = api.client.post("/api/v1/login", json={"username": "ghost", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.headers["content-type"] == "application/problem+json"
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_five_failures_lock_the_account_for_thirty_minutes(api: ApiHarness) -> None:
    for _ in range(4):
        r = api.client.post("/api/v1/login", json={"username": "view_web", "password": "bad"})
        assert r.status_code == 401
        assert r.json()["type"].endswith("unauthenticated")
    fifth = api.client.post("/api/v1/login", json={"username": "view_web", "password": "bad"})
    assert fifth.status_code == 401
    assert fifth.json()["type"].endswith("account-locked")
    # Locked: even the right password is refused, and says why.
    right = api.client.post("/api/v1/login",
                            json={"username": "view_web", "password": PASSWORD})
    assert right.status_code == 401
    assert "locked until" in right.json()["detail"]
    with api.db.session() as session:
        user = accounts.get_user_by_name(session, username="view_web")
        assert user is not None and user.locked_until is not None
        remaining = user.locked_until - utcnow()
        assert timedelta(minutes=29) < remaining <= timedelta(minutes=30)
        # 30 minutes later the lock has passed.
        user.locked_until = utcnow() - timedelta(seconds=1)
        session.add(user)
        session.commit()
    assert api.client.post("/api/v1/login", json={"username": "view_web",
                                                  "password": PASSWORD}).status_code == 200
    # Every attempt is in the audit log, with who and from where.
    logins = [e for e in audit_rows(api) if e["action"] == "login" and e["actor"] == "view_web"]
    assert [e["result"] for e in logins] == ["denied"] * 6 + ["ok"]
    assert {e["actor"] for e in logins} == {"view_web"}
    assert {e["source"] for e in logins} == {"testclient"}


def test_a_success_resets_the_failure_count(api: ApiHarness) -> None:
    for _ in range(4):
        api.client.post("/api/v1/login", json={"username": "op_web", "password": "bad"})
    api.login("op_web")
    for _ in range(4):
        api.client.post("/api/v1/login", json={"username": "op_web", "password": "bad"})
    api.login("op_web")  # not locked: the count started again


def test_logout_revokes_the_access_and_refresh_tokens(api: ApiHarness) -> None:
    pair = api.login("op_web")
    assert api.post("op_web", "/api/v1/logout").status_code == 204
    again = api.get("op_web", "/api/v1/users/me")
    assert again.status_code == 401
    assert again.json()["detail"] == "token revoked"
    refreshed = api.client.post("/api/v1/login/refresh",
                                json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 401


def test_refresh_rotates_and_a_replayed_refresh_token_ends_the_login(api: ApiHarness) -> None:
    first = api.login("op_web")
    second = api.client.post("/api/v1/login/refresh",
                             json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    new = second.json()
    assert new["access_token"] != first["access_token"]
    old_access = {"Authorization": f"Bearer {first['access_token']}"}
    assert api.client.get("/api/v1/users/me", headers=old_access).status_code == 401
    new_access = {"Authorization": f"Bearer {new['access_token']}"}
    assert api.client.get("/api/v1/users/me", headers=new_access).status_code == 200
    # The first refresh token again: someone replayed it. The whole login ends.
    replay = api.client.post("/api/v1/login/refresh",
                             json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert api.client.get("/api/v1/users/me", headers=new_access).status_code == 401


def test_a_refresh_token_is_not_a_bearer_token(api: ApiHarness) -> None:
    pair = api.login("op_web")
    r = api.client.get("/api/v1/users/me",
                       headers={"Authorization": f"Bearer {pair['refresh_token']}"})
    assert r.status_code == 401


def test_expired_access_token_is_refused(api: ApiHarness) -> None:
    api.login("op_web")
    with api.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE api_tokens SET expires_at = created_at")
    r = api.get("op_web", "/api/v1/users/me")
    assert r.status_code == 401
    assert r.json()["detail"] == "token expired"


def test_personal_token_shown_once_stored_hashed_and_revocable(api: ApiHarness) -> None:
    created = api.post("view_web", "/api/v1/tokens", json={"name": "ci", "expires_in_days": 7})
    assert created.status_code == 201, created.text
    body = created.json()
    token = body["token"]
    assert token.startswith("sgp_") and body["prefix"] == token[:10]
    with api.db.engine.connect() as conn:
        stored = [row[0] for row in conn.exec_driver_sql("SELECT token_hash FROM api_tokens")]
    assert token not in stored  # only its sha256 is kept
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 200
    listed = api.get("view_web", "/api/v1/tokens", params={"kind": "personal"}).json()
    assert listed["count"] == 1 and "token" not in listed["data"][0]
    assert api.get("view_web", f"/api/v1/tokens/{body['id']}").json()["name"] == "ci"
    # Someone else's token does not exist for a non-admin.
    assert api.get("op_web", f"/api/v1/tokens/{body['id']}").status_code == 404
    assert api.delete("op_web", f"/api/v1/tokens/{body['id']}").status_code == 404
    assert api.delete("view_web", f"/api/v1/tokens/{body['id']}").status_code == 204
    r = api.client.get("/api/v1/users/me", headers=headers)
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_admin_sees_and_revokes_anyones_tokens(api: ApiHarness) -> None:
    created = api.post("op_web", "/api/v1/tokens", json={"name": "script"}).json()
    everyone = api.get("admin", "/api/v1/tokens", params={"kind": "personal"}).json()
    assert [t["id"] for t in everyone["data"]] == [created["id"]]
    assert api.delete("admin", f"/api/v1/tokens/{created['id']}").status_code == 204
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert api.client.get("/api/v1/users/me", headers=headers).status_code == 401


def test_disabling_a_user_or_resetting_the_password_ends_their_sessions(
        api: ApiHarness) -> None:
    api.login("op_web")
    uid = api.ids["op_web"]
    assert api.patch("admin", f"/api/v1/users/{uid}",
                     json={"password": "another long password"}).status_code == 200
    assert api.get("op_web", "/api/v1/users/me").status_code == 401
    api.login("op_web", "another long password")
    assert api.patch("admin", f"/api/v1/users/{uid}", json={"is_active": False}).status_code == 200
    assert api.get("op_web", "/api/v1/users/me").status_code == 401
    r = api.client.post("/api/v1/login", json={"username": "op_web",
                                               "password": "another long password"})
    assert r.status_code == 401


def test_change_own_password(api: ApiHarness) -> None:
    wrong = api.post("view_web", "/api/v1/users/me/password",
                     json={"current_password": "nope", "new_password": "a brand new secret"})
    assert wrong.status_code == 403
    ok = api.post("view_web", "/api/v1/users/me/password",
                  json={"current_password": PASSWORD, "new_password": "a brand new secret"})
    assert ok.status_code == 204
    assert api.get("view_web", "/api/v1/users/me").status_code == 401  # signed out
    api.login("view_web", "a brand new secret")


def test_short_passwords_are_refused_naming_the_field(api: ApiHarness) -> None:
    r = api.post("admin", "/api/v1/users", json={"username": "bob", "password": "short"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "password"


def test_the_last_admin_cannot_be_demoted_disabled_or_deleted(api: ApiHarness) -> None:
    uid = api.ids["admin"]
    r = api.patch("admin", f"/api/v1/users/{uid}", json={"role": "viewer"})
    assert r.status_code == 409 and "last active admin" in r.json()["detail"]
    assert api.delete("admin", f"/api/v1/users/{uid}").status_code == 409  # own account


def test_first_start_creates_one_admin_with_a_random_password(api: ApiHarness) -> None:
    auth = AuthService(api.settings)
    with api.db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM users")
    with api.db.session() as session:
        created = auth.ensure_admin(session)
        assert created is not None
        username, password = created
        assert username == "admin" and len(password) >= 20
        assert auth.ensure_admin(session) is None  # only on the very first start
        user = accounts.get_user_by_name(session, username="admin")
        assert user is not None and user.role == Role.ADMIN
        assert password not in user.password_hash
    assert api.client.post("/api/v1/login", json={"username": "admin",
                                                  "password": password}).status_code == 200


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer nope", "Basic abc", "bearer  "])
def test_bad_credentials_are_401_problems(sqlite_api: ApiHarness, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    r = sqlite_api.client.get("/api/v1/users/me", headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 401
