"""Command runs over the API without the lab: hosts that refuse or hang, the policy,
cancellation, server-sent events replayed and followed live."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import ApiHarness, audit_rows, fast_settings, make_api, read_events, wait_status

from inventory import load_inventory
from orchestrator.storage import runs as run_store
from orchestrator.storage.db import Database


def test_run_lifecycle_with_unreachable_hosts(api: ApiHarness) -> None:
    created = api.post("op_web", "/api/v1/runs",
                       json={"pattern": "web", "command": "uptime", "forks": 2, "timeout": 5})
    assert created.status_code == 202, created.text
    run = created.json()
    assert created.headers["location"] == f"/api/v1/runs/{run['id']}"
    assert run["status"] == "pending" and run["hosts"] == ["web1", "web2"]
    done = wait_status(api, run["id"], ("failed",), user="op_web")
    assert done["unreachable"] == 2 and done["ok"] == 0
    assert [r["status"] for r in done["results"]] == ["unreachable", "unreachable"]
    assert "cannot connect" in done["results"][0]["error"]
    assert done["started_at"] <= done["finished_at"]
    events = read_events(api, run["id"], user="op_web")
    assert [e["event"] for e in events] == ["status", "host", "host", "status"]
    assert events[0]["data"] == {"status": "running"}
    assert events[-1]["data"] == {"status": "failed"}
    assert {e["data"]["host"] for e in events[1:3]} == {"web1", "web2"}
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    # Resuming after an event id replays only what came after it.
    resumed = read_events(api, run["id"], user="op_web", last_event_id=ids[1])
    assert [int(e["id"]) for e in resumed] == ids[2:]
    # The run and its end are in the audit log, with the hosts.
    entries = audit_rows(api)
    create = next(e for e in entries if e["action"] == "run.create")
    assert create["actor"] == "op_web" and create["hosts"] == ["web1", "web2"]
    assert create["detail"]["command"] == "uptime" and create["result"] == "ok"
    finish = next(e for e in entries if e["action"] == "run.finish")
    assert finish["result"] == "failed" and finish["detail"]["unreachable"] == 2


def test_policy_denial_is_refused_and_audited(api: ApiHarness) -> None:
    r = api.post("op_web", "/api/v1/runs", json={"pattern": "web", "command": "sudo rm -rf /"})
    assert r.status_code == 403
    problem = r.json()
    assert problem["type"].endswith("policy-denied") and problem["rule"] == "rm-root"
    assert "rm-root" in problem["detail"]
    assert api.get("admin", "/api/v1/runs").json()["count"] == 0  # nothing ran
    entries = audit_rows(api)
    deny = next(e for e in entries if e["action"] == "policy.deny")
    assert deny["actor"] == "op_web" and deny["result"] == "denied"
    assert deny["hosts"] == ["web1", "web2"]
    assert deny["detail"]["rule"] == "rm-root"
    assert deny["detail"]["command"] == "sudo rm -rf /"
    request = next(e for e in entries if e["action"] == "run.create")
    assert request["result"] == "denied" and request["detail"]["status"] == 403
    filtered = api.get("admin", "/api/v1/audit", params={"action": "policy"}).json()
    assert filtered["count"] == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"pattern": "web", "command": "x", "forks": 0}, "forks"),
    ({"pattern": "web", "command": "x", "timeout": -1}, "timeout"),
    ({"pattern": "", "command": "x"}, "pattern"),
    ({"pattern": "web"}, "command"),
    ({"pattern": "web:&", "command": "x"}, "pattern"),
])
def test_invalid_runs_name_the_field(sqlite_api: ApiHarness, body: dict[str, Any],
                                     field: str) -> None:
    r = sqlite_api.post("op_web", "/api/v1/runs", json=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["status"] == 422 and problem["instance"] == "/api/v1/runs"
    assert [e["field"] for e in problem["errors"]] == [field]


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a hung sshd)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def hanging_api(tmp_path: Path, silent_listener: int) -> Iterator[ApiHarness]:
    inventory_file = tmp_path / "hang.yml"
    inventory_file.write_text(
        "all:\n  children:\n    web:\n      hosts:\n"
        f"        hang1: {{ansible_host: 127.0.0.1, ansible_port: {silent_listener}}}\n"
        f"        hang2: {{ansible_host: 127.0.0.1, ansible_port: {silent_listener}}}\n")
    db = Database(f"sqlite:///{tmp_path / 'hang.db'}")
    db.migrate()
    settings = fast_settings(tmp_path, connect_timeout=60.0)
    try:
        with make_api(db, settings, load_inventory([str(inventory_file)])) as harness:
            yield harness
    finally:
        db.dispose()


def test_cancel_stops_a_run_and_live_followers_see_the_end(hanging_api: ApiHarness) -> None:
    api = hanging_api
    run = api.post("op_web", "/api/v1/runs", json={"pattern": "web", "command": "sleep 100"})
    assert run.status_code == 202
    run_id = run.json()["id"]
    assert wait_status(api, run_id, ("running",))["status"] == "running"
    api.headers("op_web")  # signed in before the other thread uses the client

    def cancel_soon() -> None:
        time.sleep(0.5)
        api.post("op_web", f"/api/v1/runs/{run_id}/cancel")

    canceller = threading.Thread(target=cancel_soon)
    started = time.monotonic()
    canceller.start()
    events = read_events(api, run_id, user="op_web")  # follows live until the end
    canceller.join()
    assert time.monotonic() - started < 15
    assert events[-1]["data"] == {"status": "canceled"}
    done = wait_status(api, run_id, ("canceled",))
    assert done["status"] == "canceled"
    assert [r["status"] for r in done["results"]] == ["canceled", "canceled"]
    assert done["error"] == "canceled on request"
    again = api.post("op_web", f"/api/v1/runs/{run_id}/cancel")
    assert again.status_code == 409
    finish = next(e for e in audit_rows(api) if e["action"] == "run.finish")
    assert finish["result"] == "canceled"
    assert finish["detail"]["canceled_hosts"] == ["hang1", "hang2"]


def test_shutdown_cancels_runs_in_flight(tmp_path: Path, silent_listener: int) -> None:
    inventory_file = tmp_path / "hang.yml"
    inventory_file.write_text("all:\n  hosts:\n    hang1: {ansible_host: 127.0.0.1, "
                              f"ansible_port: {silent_listener}}}\n")
    db = Database(f"sqlite:///{tmp_path / 'hang.db'}")
    db.migrate()
    try:
        settings = fast_settings(tmp_path, connect_timeout=60.0)
        with make_api(db, settings, load_inventory([str(inventory_file)])) as api:
            run_id = api.post("admin", "/api/v1/runs",
                              json={"pattern": "all", "command": "true"}).json()["id"]
            wait_status(api, run_id, ("running",))
        # The app stopped: the run was recorded as canceled, not left "running".
        with db.session() as session:
            run = run_store.get_run(session, run_id=run_id)
            assert run is not None and run.status == "canceled"
            assert run.error == "the service is shutting down"
    finally:
        db.dispose()
