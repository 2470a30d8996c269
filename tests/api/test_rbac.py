"""Who may do what: each role, each resource, hosts in and out of the caller's scope.

The cast (``api_support.USERS``): ``admin``; ``op_web`` (operator, group web);
``view_web`` (viewer, group web); ``op_prod`` (operator, group prod, whose child group
proddb holds db2); ``op_none`` (operator, no grants). The inventory: web = web1, web2;
db = db1; prod > proddb = db2.

Out of scope means *not found*: the same 404 as for a host that does not exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from api_support import ApiHarness

NAMES = ("admin", "op_web", "view_web", "op_prod", "op_none")


@dataclass(frozen=True)
class Case:
    what: str
    method: str
    path: str
    expect: dict[str, int]  # user -> status
    body: Any = None
    params: dict[str, Any] | None = None


def every(status: int, **others: int) -> dict[str, int]:
    return {name: others.get(name, status) for name in NAMES}


def wait_finished(api: ApiHarness, run_id: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if api.get("admin", f"/api/v1/runs/{run_id}").json()["status"] in (
                "successful", "failed", "canceled"):
            return
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def check(api: ApiHarness, cases: list[Case]) -> None:
    wrong = []
    for case in cases:
        for user, status in case.expect.items():
            call: Callable[..., Any] = getattr(api, case.method)
            kwargs: dict[str, Any] = {}
            if case.body is not None:
                kwargs["json"] = case.body
            if case.params:
                kwargs["params"] = case.params
            response = call(user, case.path, **kwargs)
            if response.status_code != status:
                wrong.append(f"{case.what}: {user} got {response.status_code}, expected "
                             f"{status}: {response.text[:200]}")
            elif status >= 400:
                assert response.headers["content-type"] == "application/problem+json"
    assert not wrong, "\n".join(wrong)


def test_rbac_matrix(api: ApiHarness) -> None:
    # Runs to look at: one on web (web1, web2), one on db1, one on db2 (made by the admin).
    web_run = api.post("admin", "/api/v1/runs", json={"pattern": "web", "command": "true"})
    db_run = api.post("admin", "/api/v1/runs", json={"pattern": "db1", "command": "true"})
    db2_run = api.post("admin", "/api/v1/runs", json={"pattern": "db2", "command": "true"})
    assert web_run.status_code == db_run.status_code == db2_run.status_code == 202
    web_id, db_id, db2_id = (r.json()["id"] for r in (web_run, db_run, db2_run))
    for run_id in (web_id, db_id, db2_id):
        wait_finished(api, run_id)
    op_web_id, admin_id = api.ids["op_web"], api.ids["admin"]
    grant = api.get("admin", "/api/v1/grants", params={"user_id": op_web_id}).json()["data"][0]

    check(api, [
        # hosts and groups: in scope 200, out of scope 404 (never 403)
        Case("host web1 (web)", "get", "/api/v1/hosts/web1", every(200, op_prod=404,
                                                                    op_none=404)),
        Case("host db1 (db)", "get", "/api/v1/hosts/db1", every(404, admin=200)),
        Case("host db2 (prod>proddb)", "get", "/api/v1/hosts/db2", every(404, admin=200,
                                                                          op_prod=200)),
        Case("host nope", "get", "/api/v1/hosts/nope", every(404)),
        Case("group web", "get", "/api/v1/groups/web", every(200, op_prod=404, op_none=404)),
        Case("group db", "get", "/api/v1/groups/db", every(404, admin=200)),
        Case("group proddb", "get", "/api/v1/groups/proddb", every(404, admin=200,
                                                                    op_prod=200)),
        Case("inventory validate", "post", "/api/v1/inventory/validate",
             every(200, view_web=403), body=None),
        # runs: read in scope, start and cancel as operator in scope
        Case("run on web", "get", f"/api/v1/runs/{web_id}", every(200, op_prod=404,
                                                                   op_none=404)),
        Case("run on db1", "get", f"/api/v1/runs/{db_id}", every(404, admin=200)),
        Case("run on db2", "get", f"/api/v1/runs/{db2_id}", every(404, admin=200,
                                                                   op_prod=200)),
        Case("events of run on web", "get", f"/api/v1/runs/{web_id}/events",
             every(200, op_prod=404, op_none=404)),
        Case("events of run on db1", "get", f"/api/v1/runs/{db_id}/events",
             every(404, admin=200)),
        Case("start run on web", "post", "/api/v1/runs",
             every(202, view_web=403, op_prod=404, op_none=404),
             body={"pattern": "web1", "command": "true"}),
        Case("start run on db1", "post", "/api/v1/runs",
             every(404, admin=202, view_web=403),
             body={"pattern": "db1", "command": "true"}),
        Case("start run on a missing host", "post", "/api/v1/runs",
             every(404, view_web=403), body={"pattern": "nope", "command": "true"}),
        Case("cancel finished run on web", "post", f"/api/v1/runs/{web_id}/cancel",
             every(409, view_web=403, op_prod=404, op_none=404)),
        Case("cancel run on db1", "post", f"/api/v1/runs/{db_id}/cancel",
             every(404, admin=409)),
        # users, grants, audit: admins; everyone reads themselves
        Case("list users", "get", "/api/v1/users", every(403, admin=200)),
        Case("read me", "get", "/api/v1/users/me", every(200)),
        Case("read another user", "get", f"/api/v1/users/{admin_id}",
             every(404, admin=200)),
        Case("update a user", "patch", f"/api/v1/users/{op_web_id}",
             every(403, admin=200), body={"full_name": "Op Web"}),
        Case("read a grant of op_web", "get", f"/api/v1/grants/{grant['id']}",
             every(404, admin=200, op_web=200)),
        Case("grant a group", "post", "/api/v1/grants", every(403, admin=409),
             body={"user_id": op_web_id, "group": "web"}),
        Case("audit log", "get", "/api/v1/audit", every(403, admin=200)),
        Case("audit verify", "get", "/api/v1/audit/verify", every(403, admin=200)),
        Case("roles", "get", "/api/v1/roles", every(200)),
        Case("own tokens", "get", "/api/v1/tokens", every(200)),
    ])


def test_lists_show_only_what_is_in_scope(api: ApiHarness) -> None:
    runs = {}
    for pattern in ("web", "db1", "db2", "all"):
        r = api.post("admin", "/api/v1/runs", json={"pattern": pattern, "command": "true"})
        assert r.status_code == 202
        runs[pattern] = r.json()["id"]
    for run_id in runs.values():
        wait_finished(api, run_id)

    def names(user: str, path: str, key: str = "name", **params: Any) -> list[Any]:
        body = api.get(user, path, params=params).json()
        assert body["count"] == len(body["data"])
        return [item[key] for item in body["data"]]

    assert names("admin", "/api/v1/hosts") == ["web1", "web2", "db1", "db2"]
    assert names("op_web", "/api/v1/hosts") == names("view_web", "/api/v1/hosts") == [
        "web1", "web2"]
    assert names("op_prod", "/api/v1/hosts") == ["db2"]
    assert names("op_none", "/api/v1/hosts") == []
    assert names("op_web", "/api/v1/hosts", pattern="all") == ["web1", "web2"]
    # a pattern naming hosts outside the scope finds nothing, like a missing one
    assert names("op_web", "/api/v1/hosts", pattern="db1") == []
    assert "db" in names("admin", "/api/v1/groups")
    assert set(names("op_web", "/api/v1/groups")) == {"all", "web"}
    assert set(names("op_prod", "/api/v1/groups")) == {"all", "prod", "proddb"}
    assert names("op_none", "/api/v1/groups") == []
    web_group = api.get("op_web", "/api/v1/groups/all").json()
    assert web_group["hosts"] == ["web1", "web2"]  # members filtered to the scope
    # runs: only those whose every host is in scope (the run on 'all' is the admin's alone)
    assert names("admin", "/api/v1/runs", key="id") == sorted(runs.values(), reverse=True)
    assert names("op_web", "/api/v1/runs", key="id") == [runs["web"]]
    assert names("op_prod", "/api/v1/runs", key="id") == [runs["db2"]]
    assert names("op_none", "/api/v1/runs", key="id") == []
    # an operator's run on 'all' only touches the hosts in scope
    mine = api.post("op_web", "/api/v1/runs", json={"pattern": "all", "command": "true"})
    assert mine.json()["hosts"] == ["web1", "web2"]
    # grants: admins see everyone's, others their own
    assert len(names("admin", "/api/v1/grants", key="group")) == 3
    assert names("op_web", "/api/v1/grants", key="group") == ["web"]
    assert names("op_none", "/api/v1/grants", key="group") == []


def test_only_admins_override_the_policy(api: ApiHarness) -> None:
    # Matches the fork-bomb rule, yet only defines a function: harmless wherever it runs.
    body = {"pattern": "web1", "command": ":(){ :|:& }", "override_policy": True}
    refused = api.post("op_web", "/api/v1/runs", json=body)
    assert refused.status_code == 403
    assert "admins only" in refused.json()["detail"]
    accepted = api.post("admin", "/api/v1/runs", json=body)
    assert accepted.status_code == 202
    assert accepted.json()["policy_override"] == "fork-bomb"
    wait_finished(api, accepted.json()["id"])
