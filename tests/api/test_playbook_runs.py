"""Playbook runs over the API: validation, RBAC and scope, the playbook directory, the run's
lifecycle, events (secrets masked), cancel and timeout; and one run on the lab's real hosts.

Runs without the lab use a host with ``ansible_connection: local`` (the play runs on this
machine, as the test user) and hosts on port 1 (refused at once: unreachable).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import ApiHarness, audit_rows, fast_settings, make_api

from api import create_app
from inventory import Inventory, load_inventory
from orchestrator.errors import ValidationFailed
from orchestrator.playbook_runs import SecretMasker, resolve_playbook_name
from orchestrator.storage.db import Database
from orchestrator.storage.models import PlaybookSource, Role

URL = "/api/v1/playbook-runs"
FINAL = ("successful", "failed", "timeout", "canceled")

INVENTORY = f"""\
all:
  vars:
    ansible_user: sg
  children:
    web:
      hosts:
        web1: {{ansible_host: 127.0.0.1, ansible_port: 1}}
        web2: {{ansible_host: 127.0.0.1, ansible_port: 1}}
    db:
      hosts:
        db1: {{ansible_host: 127.0.0.1, ansible_port: 1}}
    local:
      vars:
        ansible_connection: local
        ansible_python_interpreter: {sys.executable}
      hosts:
        local1: {{ansible_host: 127.0.0.1, db_password: inventory-secret-1}}
"""

OK_PLAYBOOK = """\
- name: ok
  hosts: all
  gather_facts: false
  tasks:
    - name: run true
      ansible.builtin.command: "true"
    - name: say
      ansible.builtin.debug:
        msg: "greeting {{ greeting }} with {{ db_password }} and {{ api_key_secret }}"
    - name: hidden
      ansible.builtin.command: echo hidden-output
      no_log: true
    - name: fact
      ansible.builtin.set_fact:
        deploy_token: fact-token-value
    - name: skipped one
      ansible.builtin.command: "false"
      when: false
"""

SLEEP_PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: sleep
      ansible.builtin.command: "sleep {{ seconds }}"
"""

BROKEN_PLAYBOOK = """\
- hosts: all
  tasks:
    - name: x
     ansible.builtin.command: "true"
"""

SECRETS = ("inventory-secret-1", "extra-secret-2", "fact-token-value", "hidden-output")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The inventory file and the playbook directory."""
    root = tmp_path_factory.mktemp("playbook-api")
    inventory = root / "inventory.yml"
    inventory.write_text(INVENTORY)
    books = root / "playbooks"
    (books / "sub").mkdir(parents=True)
    (books / "ok.yml").write_text(OK_PLAYBOOK)
    (books / "sleep.yml").write_text(SLEEP_PLAYBOOK)
    (books / "broken.yml").write_text(BROKEN_PLAYBOOK)
    (books / "notplays.yml").write_text("hosts: all\n")
    (books / "notes.txt").write_text("- hosts: all\n")
    (books / "sub" / "nested.yml").write_text(SLEEP_PLAYBOOK)
    (root / "outside.yml").write_text(SLEEP_PLAYBOOK)
    (books / "escape.yml").symlink_to(root / "outside.yml")
    return inventory, books


@pytest.fixture(scope="module")
def pb_inventory(files: tuple[Path, Path]) -> Inventory:
    return load_inventory([str(files[0])])


def _harness(db: Database, tmp_path: Path, files: tuple[Path, Path],
             inventory: Inventory) -> Any:
    settings = fast_settings(tmp_path, inventory=[str(files[0])], playbook_dir=files[1])
    return make_api(db, settings, inventory)


@pytest.fixture
def pb_api(database: Database, tmp_path: Path, files: tuple[Path, Path],
           pb_inventory: Inventory) -> Iterator[ApiHarness]:
    """The API on each backend, with an operator granted the local host."""
    with _harness(database, tmp_path, files, pb_inventory) as harness:
        harness.add_user("op_local", Role.OPERATOR, ("local",))
        yield harness


@pytest.fixture
def pb_sqlite(tmp_path: Path, files: tuple[Path, Path],
              pb_inventory: Inventory) -> Iterator[ApiHarness]:
    """The same on SQLite only, for what does not depend on the backend."""
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    db.migrate()
    try:
        with _harness(db, tmp_path, files, pb_inventory) as harness:
            harness.add_user("op_local", Role.OPERATOR, ("local",))
            yield harness
    finally:
        db.dispose()


def wait_run(api: ApiHarness, run_id: int, user: str = "admin",
             timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = api.get(user, f"{URL}/{run_id}").json()
        if run["status"] in FINAL or time.monotonic() > deadline:
            return run
        time.sleep(0.1)


def stream(api: ApiHarness, run_id: int, user: str = "admin",
           path: str = f"{URL}/{{id}}/events/stream") -> list[dict[str, Any]]:
    """The whole SSE stream, parsed: [{event, id, data}]."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with api.client.stream("GET", path.format(id=run_id), headers=api.headers(user)) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(": ")
                current[key] = json.loads(value) if key == "data" else value
    return events


def result_of(events: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """The data of the one ``host_result`` event of ``task``."""
    found = [e["data"] for e in events
             if e["event"] == "host_result" and e["data"]["task"] == task]
    assert len(found) == 1, found
    return found[0]


def all_events(api: ApiHarness, run_id: int, user: str = "admin", **params: Any) -> Any:
    response = api.get(user, f"{URL}/{run_id}/events", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------- a whole run


def test_run_lifecycle_recap_events_and_masking(pb_api: ApiHarness, tmp_path: Path) -> None:
    api = pb_api
    created = api.post("op_local", URL, json={
        "playbook": "ok", "limit": "all",
        "extra_vars": {"greeting": "hello", "api_key_secret": "extra-secret-2"}})
    assert created.status_code == 202, created.text
    run = created.json()
    assert created.headers["location"] == f"{URL}/{run['id']}"
    assert run["status"] == "pending" and run["hosts"] == ["local1"]  # "all" within scope
    assert (run["playbook"], run["source"]) == ("ok.yml", "directory")
    assert run["extra_vars"] == {"greeting": "hello", "api_key_secret": "********"}

    live = stream(api, run["id"], user="op_local")  # connects while the run is in flight
    assert live[0]["data"] == {"status": "running"}
    assert live[-1] == {"event": "status", "id": live[-1]["id"],
                        "data": {"status": "successful"}}
    kinds = [e["event"] for e in live]
    assert kinds.count("task_start") == 5 and kinds.count("host_result") == 5
    assert kinds[-4:] == ["host_result", "stats", "host", "status"]
    ids = [int(e["id"]) for e in live]
    assert ids == sorted(ids)
    say = result_of(live, "say")
    assert say["result"]["msg"] == "greeting hello with ******** and ********"
    hidden = result_of(live, "hidden")
    assert "no_log" in hidden["result"]["censored"]
    fact = result_of(live, "fact")
    assert fact["result"]["ansible_facts"] == {"deploy_token": "********"}
    text = json.dumps(live)
    assert not [s for s in SECRETS if s in text]

    detail = wait_run(api, run["id"], user="op_local")
    assert detail["status"] == "successful" and detail["exit_code"] == 0
    assert detail["ok"] == 1 and detail["failed"] == detail["unreachable"] == 0
    assert detail["started_at"] <= detail["finished_at"]
    assert detail["recap"] == [{
        "host": "local1", "status": "ok", "ok": 4, "changed": 2, "unreachable": 0,
        "failed": 0, "skipped": 1, "rescued": 0, "ignored": 0, "error": None,
        "finished_at": detail["recap"][0]["finished_at"]}]

    # The stored events, paginated and filtered, are the stream's.
    everything = all_events(api, run["id"], user="op_local")
    assert everything["count"] == len(live)
    assert [e["id"] for e in everything["data"]] == ids
    page = api.get("op_local", f"{URL}/{run['id']}/events", params={"skip": 2, "limit": 3})
    assert [e["id"] for e in page.json()["data"]] == ids[2:5]
    results = all_events(api, run["id"], user="op_local", kind="host_result")
    assert [e["status"] for e in results["data"]] == ["changed", "ok", "ok", "ok", "skipped"]
    assert results["data"][0]["task"] == "run true" and results["data"][0]["result"]["rc"] == 0
    ends = all_events(api, run["id"], user="op_local", host="local1", kind=["host", "stats"])
    assert [e["kind"] for e in ends["data"]] == ["host"]  # stats belong to no one host
    assert ends["data"][0]["result"]["changed"] == 2
    assert not [s for s in SECRETS if s in json.dumps(everything)]

    # A playbook run is a run: listed there, streamed there too.
    listed = api.get("op_local", "/api/v1/runs").json()
    assert [(r["id"], r["kind"]) for r in listed["data"]] == [(run["id"], "playbook")]
    assert stream(api, run["id"], user="op_local", path="/api/v1/runs/{id}/events") == live
    assert api.get("op_local", URL).json()["count"] == 1

    entries = audit_rows(api)
    create = next(e for e in entries if e["action"] == "playbook_run.create")
    assert create["actor"] == "op_local" and create["hosts"] == ["local1"]
    assert create["result"] == "ok" and create["target"] == f"run:{run['id']}"
    assert create["detail"]["playbook"] == "ok"
    assert create["detail"]["extra_vars"] == ["api_key_secret", "greeting"]  # names only
    finish = next(e for e in entries if e["action"] == "run.finish")
    assert finish["result"] == "successful" and finish["detail"]["playbook"] == "ok.yml"
    assert finish["detail"]["exit_code"] == 0
    assert not [s for s in SECRETS if s in json.dumps(entries)]

    # The run directory's own record of the events is masked too.
    (recorded,) = (tmp_path / "state").rglob("events.jsonl")
    lines = recorded.read_text().splitlines()
    assert [json.loads(line)["kind"] for line in lines].count("host_result") == 5
    assert "greeting hello with ******** and ********" in recorded.read_text()
    assert not [s for s in SECRETS if s in recorded.read_text()]


def test_unreachable_hosts_scope_and_reading_rights(pb_sqlite: ApiHarness) -> None:
    api = pb_sqlite
    created = api.post("op_web", URL, json={"playbook": "sysctl_baseline.yml", "check": True})
    assert created.status_code == 202, created.text
    run = created.json()
    assert run["hosts"] == ["web1", "web2"] and run["source"] == "shipped"
    assert run["playbook"] == "sysctl_baseline" and run["check"] is True
    detail = wait_run(api, run["id"], user="op_web")
    assert detail["status"] == "failed" and detail["exit_code"] == 4
    assert detail["unreachable"] == 2 and detail["ok"] == 0
    assert [(r["host"], r["status"], r["unreachable"]) for r in detail["recap"]] == [
        ("web1", "unreachable", 1), ("web2", "unreachable", 1)]
    assert detail["recap"][0]["error"]
    # Viewers of the group read it; others do not see it at all.
    assert api.get("view_web", f"{URL}/{run['id']}").status_code == 200
    assert all_events(api, run["id"], user="view_web")["count"] > 0
    for user in ("op_prod", "op_local"):
        assert api.get(user, f"{URL}/{run['id']}").status_code == 404
        assert api.get(user, f"{URL}/{run['id']}/events").status_code == 404
        assert api.get(user, f"{URL}/{run['id']}/events/stream").status_code == 404
        assert api.post(user, f"{URL}/{run['id']}/cancel").status_code == 404
        assert api.get(user, URL).json()["count"] == 0
    assert api.get("view_web", URL).json()["count"] == 1
    denied = api.post("view_web", f"{URL}/{run['id']}/cancel")
    assert denied.status_code == 403
    over = api.post("op_web", f"{URL}/{run['id']}/cancel")
    assert over.status_code == 409 and "already finished" in over.json()["detail"]


def test_cancel_stops_ansible_and_its_command(pb_sqlite: ApiHarness) -> None:
    api = pb_sqlite
    seconds = f"299.{time.monotonic_ns() % 10**6}"  # a process we can recognize
    created = api.post("op_local", URL, json={"playbook": "sleep.yml", "limit": "local1",
                                              "extra_vars": {"seconds": seconds}})
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while not _procs(f"sleep {seconds}"):
        assert time.monotonic() < deadline, "the playbook's command never started"
        time.sleep(0.1)

    def cancel_soon() -> None:
        time.sleep(0.3)
        assert api.post("op_local", f"{URL}/{run_id}/cancel").status_code == 202

    thread = threading.Thread(target=cancel_soon)
    thread.start()
    events = stream(api, run_id, user="op_local")
    thread.join()
    assert events[-1]["data"] == {"status": "canceled"}
    assert events[-2]["event"] == "host" and events[-2]["data"]["status"] == "canceled"
    detail = wait_run(api, run_id, user="op_local")
    assert detail["status"] == "canceled" and detail["exit_code"] == 99
    assert detail["recap"][0]["status"] == "canceled"
    deadline = time.monotonic() + 15
    while _procs(f"sleep {seconds}"):
        assert time.monotonic() < deadline, "the playbook's command survived the cancel"
        time.sleep(0.1)
    finish = next(e for e in audit_rows(api) if e["action"] == "run.finish")
    assert finish["result"] == "canceled"


def test_timeout_ends_the_run(pb_sqlite: ApiHarness) -> None:
    api = pb_sqlite
    created = api.post("op_local", URL, json={"playbook": "sub/nested", "limit": "local",
                                              "extra_vars": {"seconds": "60"}, "timeout": 3})
    assert created.status_code == 202, created.text
    assert created.json()["playbook"] == "sub/nested.yml"
    detail = wait_run(api, created.json()["id"], user="op_local")
    assert detail["status"] == "timeout" and detail["exit_code"] == 124
    assert "timeout of 3 s" in detail["error"]
    assert detail["recap"][0]["status"] == "timeout"


def _procs(needle: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if needle in line and "ps -eo" not in line and str(os.getpid()) != line.split()[0]]


# ---------------------------------------------------------------------------- refused requests


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"playbook": "nope"}, "playbook", "not found: not a shipped playbook (baseline_audit"),
    ({"playbook": "../outside.yml"}, "playbook", "outside the playbook directory"),
    ({"playbook": "/etc/passwd"}, "playbook", "outside the playbook directory"),
    ({"playbook": "escape.yml"}, "playbook", "outside the playbook directory"),
    ({"playbook": "escape"}, "playbook", "outside the playbook directory"),
    ({"playbook": "."}, "playbook", "not found"),
    ({"playbook": "sub"}, "playbook", "not found"),
    ({"playbook": "notes.txt"}, "playbook", "not a playbook file"),
    ({"playbook": "broken.yml"}, "playbook", "broken.yml:4:"),
    ({"playbook": "notplays"}, "playbook", "notplays.yml:1: a playbook is a list of plays"),
    ({"limit": "local"}, "playbook", "Field required"),
    ({"playbook": "ok", "limit": ""}, "limit", "at least 1 character"),
    ({"playbook": "ok", "limit": "local:&"}, "limit", ""),
    ({"playbook": "ok", "extra_vars": {"not a name": 1}}, "extra_vars", "not a variable name"),
    ({"playbook": "ok", "extra_vars": []}, "extra_vars", ""),
    ({"playbook": "ok", "tags": ["a,b"]}, "tags.0", ""),
    ({"playbook": "ok", "timeout": 0}, "timeout", ""),
    ({"playbook": "ok", "forks": 0}, "forks", ""),
    ({"playbook": "ok", "check": "maybe"}, "check", ""),
])
def test_invalid_requests_name_the_field(pb_sqlite: ApiHarness, body: dict[str, Any],
                                         field: str, words: str) -> None:
    r = pb_sqlite.post("op_local", URL, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["field"] == field
    assert words in problem["detail"] + problem["errors"][0]["message"]
    assert str(pb_sqlite.settings.playbook_dir) not in r.text  # no server paths
    assert pb_sqlite.get("admin", URL).json()["count"] == 0  # nothing ran


def test_roles_and_scope(pb_sqlite: ApiHarness) -> None:
    api = pb_sqlite
    viewer = api.post("view_web", URL, json={"playbook": "ok", "limit": "web"})
    assert viewer.status_code == 403 and "operator" in viewer.json()["detail"]
    for limit in ("db1", "db", "local1", "nosuchhost"):  # out of scope looks like absent
        r = api.post("op_web", URL, json={"playbook": "ok", "limit": limit})
        assert r.status_code == 404, (limit, r.text)
        assert r.json()["type"].endswith("not-found") and limit in r.json()["detail"]
    assert api.post("op_none", URL, json={"playbook": "ok"}).status_code == 404
    conn = api.post("op_web", URL, json={"playbook": "ok", "limit": "web",
                                         "extra_vars": {"ansible_connection": "local"}})
    assert conn.status_code == 403
    assert "extra_vars.ansible_connection" in conn.json()["detail"]
    assert api.get("admin", URL).json()["count"] == 0
    entries = [e for e in audit_rows(api) if e["action"] == "playbook_run.create"]
    assert [e["result"] for e in entries] == ["denied"] + ["rejected"] * 5 + ["denied"]
    assert entries[0]["actor"] == "view_web" and entries[0]["detail"]["playbook"] == "ok"


def test_extra_vars_of_non_admins_are_data_and_only_documented_ones(
    pb_sqlite: ApiHarness, tmp_path: Path
) -> None:
    """An operator's {{ ... }} is printed as is, never run on the orchestrator; an admin's
    renders as in Ansible. Shipped playbooks take only their documented variables."""
    api = pb_sqlite
    outcome = {}
    for user in ("op_local", "admin"):
        marker = tmp_path / f"ran-{user}"
        template = f"{{{{ lookup('pipe', 'touch {marker}; echo rendered') }}}}"
        created = api.post(user, URL, json={"playbook": "ok", "limit": "local1", "extra_vars": {
            "greeting": template, "api_key_secret": "x"}})
        assert created.status_code == 202, created.text
        run = wait_run(api, created.json()["id"])
        assert run["status"] == "successful", run
        said = result_of(stream(api, run["id"]), "say")["result"]["msg"]
        outcome[user] = (marker.exists(), said.split(" with ")[0])
    assert outcome["op_local"] == (False, "greeting {{ lookup('pipe', 'touch "
                                   f"{tmp_path / 'ran-op_local'}; echo rendered') }}}}")
    assert outcome["admin"] == (True, "greeting rendered")
    # the dead-man switch's connection is the firewall role's own business: refused before
    # anything runs (nothing here may run the firewall playbook: local1 is this machine)
    internal = api.post("op_local", URL, json={"playbook": "firewall", "limit": "local1",
                                               "extra_vars": {"deadman_connection": "local"}})
    assert internal.status_code == 403, internal.text
    assert "extra_vars.deadman_connection: not a variable of playbook firewall" in (
        internal.json()["detail"])


def test_playbook_catalog(pb_sqlite: ApiHarness) -> None:
    body = pb_sqlite.get("view_web", "/api/v1/playbooks").json()
    names = {(p["name"], p["source"]) for p in body["data"]}
    assert {("firewall", "shipped"), ("sysctl_baseline", "shipped"), ("ok.yml", "directory"),
            ("sleep.yml", "directory")} <= names
    assert ("notes.txt", "directory") not in names and body["count"] == len(body["data"])
    audit = next(p for p in body["data"] if p["name"] == "baseline_audit")
    assert audit["check_only"] is True


def test_without_inventory_files_playbook_runs_are_unavailable(
        sqlite_api: ApiHarness) -> None:
    r = sqlite_api.post("admin", URL, json={"playbook": "sysctl_baseline", "limit": "web"})
    assert r.status_code == 503 and "inventory" in r.json()["detail"]


def test_resolving_names_without_a_directory(tmp_path: Path) -> None:
    found = resolve_playbook_name("firewall.yml", None)
    assert found.source == PlaybookSource.SHIPPED and found.name == "firewall"
    with pytest.raises(ValidationFailed, match="none is configured") as info:
        resolve_playbook_name("sub/site.yml", None)
    assert info.value.errors[0][0] == "playbook"
    (tmp_path / "firewall.yml").write_text("- hosts: all\n")
    mine = resolve_playbook_name("firewall", tmp_path)  # the directory comes first
    assert mine.source == PlaybookSource.DIRECTORY and mine.path == tmp_path / "firewall.yml"


def test_secret_masker() -> None:
    masker = SecretMasker.for_run(
        {"db": {"password": "p4ssw0rd"}, "name": "visible", "pin_token": 123456}, None, [])
    assert masker.data({"msg": "a p4ssw0rd b 123456", "api_token": "x", "name": "visible"}) == {
        "msg": "a ******** b ********", "api_token": "********", "name": "visible"}
    assert SecretMasker().text("nothing to hide") == "nothing to hide"


# ---------------------------------------------------------------------------- the lab


@pytest.mark.lab
def test_playbook_run_on_lab_hosts(lab: Any, settings: Any, tmp_path: Path) -> None:
    """A tiny playbook through the API on real sshd hosts: direct, behind a bastion and
    two hops away, followed over SSE to the end; each host's recap as ansible-playbook's."""
    books = tmp_path / "playbooks"
    books.mkdir()
    (books / "tiny.yml").write_text("""\
- hosts: all
  gather_facts: false
  tasks:
    - name: run true
      ansible.builtin.command: "true"
    - name: hostname
      ansible.builtin.command: hostname
      register: name
      changed_when: false
    - ansible.builtin.debug: {msg: "{{ name.stdout }}"}
""")
    svc = fast_settings(tmp_path, inventory=[str(lab.inventory_path)], playbook_dir=books,
                        user_known_hosts=settings.user_known_hosts, connect_timeout=10.0)
    db = Database(f"sqlite:///{tmp_path / 'lab.db'}")
    try:
        from fastapi.testclient import TestClient

        with TestClient(create_app(svc, database=db)) as client:
            api = ApiHarness(client=client, db=db, settings=svc)
            api.add_user("admin", Role.ADMIN)
            created = api.post("admin", URL, json={"playbook": "tiny", "check": False,
                                                   "limit": "public:private:deep"})
            assert created.status_code == 202, created.text
            run = created.json()
            hosts = run["hosts"]
            assert {"private01", "deep01"} <= set(hosts)
            events = stream(api, run["id"])
            failures = [e["data"] for e in events if e["data"].get("status") in (
                "failed", "unreachable")]
            assert not failures
            assert events[-1]["data"] == {"status": "successful"}
            said = {e["data"]["host"]: e["data"]["result"]["msg"] for e in events
                    if e["event"] == "host_result" and e["data"]["action"].endswith("debug")}
            assert set(said) == set(hosts)
            detail = wait_run(api, run["id"])
            assert detail["status"] == "successful" and detail["exit_code"] == 0
            assert detail["ok"] == len(hosts)
            for line in detail["recap"]:
                assert (line["status"], line["ok"], line["changed"], line["failed"],
                        line["unreachable"]) == ("ok", 3, 1, 0, 0), line
    finally:
        db.dispose()
