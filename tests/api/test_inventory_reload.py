"""``POST /api/v1/inventory/reload``: the service's own inventory files read again now; an
inventory with errors is refused line by line and the loaded one stays."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import ApiHarness, audit_rows, fast_settings
from fastapi.testclient import TestClient

import api.inventory_source
from api import create_app
from orchestrator.storage.db import Database
from orchestrator.storage.models import Role

ONE = "all:\n  children:\n    web:\n      hosts:\n        web1: {ansible_host: 10.0.0.1}\n"
TWO = ONE + "        web2: {ansible_host: 10.0.0.2}\n"
BROKEN = TWO + "    db:\n      hosts: [this is not a mapping\n"


@pytest.fixture
def reload_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ApiHarness,
                                                                                   Path]]:
    # The files are never looked at again on their own during the test: only reload reads.
    monkeypatch.setattr(api.inventory_source, "RECHECK", 3600.0)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(ONE)
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    app = create_app(fast_settings(tmp_path, inventory=[str(inventory)]), database=db)
    try:
        with TestClient(app) as client:
            harness = ApiHarness(client=client, db=db, settings=app.state.serverguard.settings)
            harness.add_user("admin", Role.ADMIN)
            harness.add_user("operator", Role.OPERATOR, ("web",))
            harness.add_user("viewer", Role.VIEWER, ("web",))
            yield harness, inventory
    finally:
        db.dispose()


def hosts(api: ApiHarness) -> list[str]:
    return [h["name"] for h in api.get("admin", "/api/v1/hosts").json()["data"]]


def test_reload_reads_the_files_now(reload_api: tuple[ApiHarness, Path]) -> None:
    api, inventory = reload_api
    assert hosts(api) == ["web1"]
    inventory.write_text(TWO)
    assert hosts(api) == ["web1"]  # not looked at yet
    r = api.post("operator", "/api/v1/inventory/reload")
    assert r.status_code == 200, r.text
    assert r.json()["valid"] is True and r.json()["hosts"] == 2
    assert hosts(api) == ["web1", "web2"]
    entry = next(e for e in audit_rows(api) if e["action"] == "inventory.reload")
    assert entry["actor"] == "operator" and entry["result"] == "ok"
    assert entry["detail"]["hosts"] == 2


def test_broken_inventory_is_refused_and_the_loaded_one_stays(
    reload_api: tuple[ApiHarness, Path],
) -> None:
    api, inventory = reload_api
    assert hosts(api) == ["web1"]  # loaded
    inventory.write_text(BROKEN)
    r = api.post("admin", "/api/v1/inventory/reload")
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["detail"].startswith("inventory not reloaded: ")
    assert re.search(rf"{re.escape(str(inventory))}:\d+", problem["detail"])  # file and line
    assert problem["errors"][0]["field"] == "inventory"
    assert hosts(api) == ["web1"]  # still serving what it had


def test_reload_needs_an_operator(reload_api: tuple[ApiHarness, Path]) -> None:
    api, _ = reload_api
    assert api.post("viewer", "/api/v1/inventory/reload").status_code == 403


def test_without_inventory_files_reload_is_a_conflict(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    app = create_app(fast_settings(tmp_path), database=db)
    try:
        with TestClient(app) as client:
            harness = ApiHarness(client=client, db=db, settings=app.state.serverguard.settings)
            harness.add_user("admin", Role.ADMIN)
            r = harness.post("admin", "/api/v1/inventory/reload")
            assert r.status_code == 409 and "no inventory files" in r.json()["detail"]
    finally:
        db.dispose()
