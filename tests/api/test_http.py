"""The HTTP surface: problem documents, pagination, masking, filters, inventory validation,
health, metrics, OpenAPI, and the audit of every state-changing request."""

from __future__ import annotations

from pathlib import Path

from api_support import INVENTORY, ApiHarness, audit_rows, fast_settings
from fastapi.testclient import TestClient

from api import create_app
from orchestrator.auth.masking import MASK, is_secret, mask_vars
from orchestrator.storage.db import Database


def test_unknown_route_and_method_are_problems(sqlite_api: ApiHarness) -> None:
    r = sqlite_api.get("admin", "/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "about:blank", "title": "Not Found", "status": 404,
                        "detail": "no resource at /api/v1/nothing-here",
                        "instance": "/api/v1/nothing-here"}
    r = sqlite_api.client.put("/api/v1/runs")
    assert r.status_code == 405 and r.json()["title"] == "Method Not Allowed"


def test_validation_problems_name_each_field(sqlite_api: ApiHarness) -> None:
    r = sqlite_api.post("admin", "/api/v1/users",
                        json={"username": "bad name!", "password": "short", "role": "king"})
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"] == "urn:serverguard:problem:validation"
    assert {e["field"] for e in problem["errors"]} == {"username", "password", "role"}
    assert problem["detail"].startswith("invalid ")
    r = sqlite_api.get("admin", "/api/v1/hosts", params={"limit": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limit"


def test_missing_resources_name_themselves(sqlite_api: ApiHarness) -> None:
    for path, name in [("/api/v1/users/999", "user 999"), ("/api/v1/runs/999", "run 999"),
                       ("/api/v1/grants/999", "grant 999"), ("/api/v1/hosts/zzz", "host 'zzz'"),
                       ("/api/v1/groups/zzz", "group 'zzz'")]:
        r = sqlite_api.get("admin", path)
        assert r.status_code == 404, path
        assert r.json()["detail"] == f"{name} not found"
        assert r.json()["instance"] == path


def test_pagination_counts_everything_and_pages_through(sqlite_api: ApiHarness) -> None:
    first = sqlite_api.get("admin", "/api/v1/hosts", params={"limit": 3}).json()
    second = sqlite_api.get("admin", "/api/v1/hosts", params={"skip": 3, "limit": 3}).json()
    assert first["count"] == second["count"] == 4
    assert [h["name"] for h in first["data"] + second["data"]] == ["web1", "web2", "db1", "db2"]
    users = sqlite_api.get("admin", "/api/v1/users", params={"skip": 1, "limit": 2}).json()
    assert users["count"] == 5 and len(users["data"]) == 2
    assert sqlite_api.get("admin", "/api/v1/users",
                          params={"role": "operator"}).json()["count"] == 3


def test_secret_variables_never_leave(sqlite_api: ApiHarness) -> None:
    web2 = sqlite_api.get("admin", "/api/v1/hosts/web2").json()
    assert web2["vars"]["ansible_password"] == MASK
    assert web2["vars"]["api_token"] == MASK
    assert web2["vars"]["env"] == "dev"
    assert web2["groups"] == ["web"]
    db = sqlite_api.get("admin", "/api/v1/groups/db").json()
    assert db["vars"] == {"db_secret": MASK, "db_port": 5432}
    everything = sqlite_api.get("admin", "/api/v1/hosts").text + sqlite_api.get(
        "admin", "/api/v1/groups").text
    for secret in ("hunter2", "s3cret", '"abc"'):
        assert secret not in everything


def test_masking_rules() -> None:
    for name in ("ansible_password", "ansible_become_pass", "ansible_ssh_pass", "password",
                 "PASSPHRASE", "db_secret", "github_token", "TokenValue", "ssh_private_key"):
        assert is_secret(name), name
    for name in ("ansible_user", "passenger_count", "bypass_cache", "ansible_ssh_private_key_file",
                 "env"):
        assert not is_secret(name), name
    nested = {"app": {"db": {"password": "x", "port": 1}}, "list": [{"token": "y"}]}
    assert mask_vars(nested) == {"app": {"db": {"password": MASK, "port": 1}},
                                 "list": [{"token": MASK}]}


def test_host_filters_by_pattern_and_variables(sqlite_api: ApiHarness) -> None:
    def names(**params: object) -> list[str]:
        r = sqlite_api.get("admin", "/api/v1/hosts", params=params)
        assert r.status_code == 200, r.text
        return [h["name"] for h in r.json()["data"]]

    assert names(pattern="web:!web2") == ["web1"]
    assert names(pattern="web*") == ["web1", "web2"]
    assert names(var="env=prod") == ["web1", "db1"]
    assert names(var=["env=prod", "tier=1"]) == ["web1"]  # numbers compare as JSON
    assert names(var="tier") == ["web1"]
    assert names(pattern="db*", var="env=prod") == ["db1"]


def test_filtering_on_a_secret_is_refused(sqlite_api: ApiHarness) -> None:
    r = sqlite_api.get("admin", "/api/v1/hosts", params={"var": "ansible_password=hunter2"})
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "var",
                                   "message": "ansible_password is a secret variable"}]


def test_group_list_filters_by_name(sqlite_api: ApiHarness) -> None:
    r = sqlite_api.get("admin", "/api/v1/groups", params={"name": "prod*"}).json()
    assert [g["name"] for g in r["data"]] == ["prod", "proddb"]
    prod = sqlite_api.get("admin", "/api/v1/groups/prod").json()
    assert prod["children"] == ["proddb"] and prod["hosts"] == ["db2"]


def test_inventory_validation_reports_lines(sqlite_api: ApiHarness) -> None:
    def validate(text: str) -> dict[str, object]:
        r = sqlite_api.client.post("/api/v1/inventory/validate", content=text.encode(),
                                   headers={**sqlite_api.headers("op_web"),
                                            "Content-Type": "application/yaml"})
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    good = validate(INVENTORY)
    assert good["valid"] is True and good["hosts"] == 4 and good["errors"] == []
    bad = validate("all:\n  hosts:\n    web1:\n  children:\n    web:\n      hosts: [a, b]\n")
    assert bad["valid"] is False
    errors = bad["errors"]
    assert isinstance(errors, list) and errors
    assert errors[0]["line"] == 6
    assert errors[0]["text"].startswith("inventory.yml:6:")
    assert "/tmp" not in str(bad)  # the server's temp path never shows
    syntax = validate("all:\n  hosts: [\n")
    assert syntax["valid"] is False
    assert syntax["errors"][0]["line"] is not None  # type: ignore[index]
    warn = validate("all:\n  hosts:\n    a:\n  host: {}\n")
    assert warn["valid"] is True and warn["warnings"]
    assert sqlite_api.get("admin", "/api/v1/audit",
                          params={"action": "inventory"}).json()["count"] == 0


def test_every_state_changing_request_is_audited(sqlite_api: ApiHarness) -> None:
    api = sqlite_api
    created = api.post("admin", "/api/v1/users", json={"username": "carol", "password": "x" * 12,
                                                       "role": "viewer"})
    uid = created.json()["id"]
    api.post("admin", "/api/v1/grants", json={"user_id": uid, "group": "db"})
    api.patch("admin", f"/api/v1/users/{uid}", json={"role": "operator"})
    api.post("view_web", "/api/v1/users", json={"username": "dave", "password": "y" * 12})
    api.client.post("/api/v1/logout")  # no token at all
    api.get("admin", "/api/v1/hosts")  # reads are not audited
    entries = audit_rows(api)
    seen = [(e["action"], e["actor"], e["result"]) for e in entries]
    assert ("user.create", "admin", "ok") in seen
    assert ("grant.create", "admin", "ok") in seen
    assert ("user.update", "admin", "ok") in seen
    assert ("user.create", "view_web", "denied") in seen
    assert ("logout", None, "denied") in seen
    assert not [e for e in entries if e["detail"].get("method") == "GET"]
    update = next(e for e in entries if e["action"] == "user.update")
    assert update["target"] == "user:carol" and update["detail"]["changed"] == ["role"]
    assert update["source"] == "testclient"
    assert all("password" not in str(e["detail"]).lower() or e["action"] == "user.password"
               for e in entries)
    assert "x" * 12 not in str(entries)  # no request body, no password
    assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True


def test_healthz_metrics_and_docs_need_no_token(sqlite_api: ApiHarness) -> None:
    client = sqlite_api.client
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["database"] == "ok"
    sqlite_api.get("admin", "/api/v1/hosts/web1")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'serverguard_http_requests_total{method="GET",route="/api/v1/hosts/{name}",' \
           'status="200"} 1.0' in text
    assert "serverguard_http_request_duration_seconds_bucket" in text
    assert "serverguard_runs_in_flight 0.0" in text
    assert "serverguard_ssh_connections_open 0.0" in text
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/v1/runs/{run_id}/events" in schema["paths"]
    assert "Problem" in schema["components"]["schemas"]
    assert client.get("/api/v1/hosts").status_code == 401  # but the API does


def test_healthz_reports_a_dead_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'h.db'}")
    app = create_app(fast_settings(tmp_path), database=db)
    with TestClient(app) as client:
        (tmp_path / "h.db").unlink()
        db.engine.dispose()
        (tmp_path / "h.db").mkdir()  # now it cannot even be opened
        r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    db.dispose()


def test_nul_characters_are_refused_on_every_backend(api: ApiHarness) -> None:
    # PostgreSQL cannot store NUL: refused up front as a 422 naming the field, never a 500.
    r = api.post("admin", "/api/v1/grants", json={"user_id": api.ids["op_web"], "group": "a\0b"})
    assert r.status_code == 422 and "NUL" in r.json()["detail"]
    r = api.get("admin", "/api/v1/grants", params={"group": "a\0b"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "group"
    r = api.post("op_web", "/api/v1/runs", json={"pattern": "web", "command": "echo \0"})
    assert r.status_code == 422
    r = api.client.post("/api/v1/login", json={"username": "x\0", "password": "y"})
    assert r.status_code == 422
    assert api.get("admin", "/api/v1/audit/verify").json()["ok"] is True
