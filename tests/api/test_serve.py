"""``serverguard serve``: loopback by default, first start prints the admin password once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import uvicorn
from api_support import INVENTORY, fast_settings
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api import create_app
from orchestrator import audit
from orchestrator.cli import serve_cmd
from orchestrator.collection import check_collection
from orchestrator.errors import ConfigError
from orchestrator.storage.db import Database


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setenv("SERVERGUARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SERVERGUARD_PASSWORD_HASH_MEMORY_KIB", "64")
    monkeypatch.setenv("SERVERGUARD_PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("SERVERGUARD_PASSWORD_HASH_PARALLELISM", "1")
    return calls


def run_serve(*args: str) -> Any:
    app = typer.Typer()
    app.command()(serve_cmd.serve)
    return CliRunner().invoke(app, list(args))


def test_first_start_prints_the_password_once(started: list[dict[str, Any]],
                                              tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(INVENTORY)
    first = run_serve("-i", str(inventory))
    assert first.exit_code == 0, first.output
    match = re.search(r"password\n\n    (\S+)\n", first.output)
    assert match, first.output
    password = match.group(1)
    assert len(password) >= 20
    assert started[0]["host"] == "127.0.0.1" and started[0]["port"] == 8080
    second = run_serve("-i", str(inventory), "--port", "9999")
    assert second.exit_code == 0
    assert password not in second.output and "First start" not in second.output
    assert started[1]["port"] == 9999
    db = Database(f"sqlite:///{tmp_path / 'state' / 'serverguard.db'}")
    try:
        entries = list(audit.iter_entries(db))
        assert [e.action for e in entries] == ["user.bootstrap"]
        assert password not in str(entries[0].model_dump())
    finally:
        db.dispose()


def test_listening_beyond_loopback_warns(started: list[dict[str, Any]]) -> None:
    result = run_serve("--host", "0.0.0.0")
    assert result.exit_code == 0, result.output
    assert "beyond this machine" in result.output
    assert started[0]["host"] == "0.0.0.0"


def test_help_shows_where_the_defaults_come_from() -> None:
    # rich reads "[default: ...]" in a help string as markup and drops it: the text must say it
    app = typer.Typer()
    app.command()(serve_cmd.serve)
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})  # no "…" cuts
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "Default: $SERVERGUARD_API_HOST, else 127.0.0.1." in text
    assert "Default: $SERVERGUARD_API_PORT, else 8080." in text
    assert "Default: $SERVERGUARD_COLLECT_BATCH, else 20." in text


BAD_COLLECTORS = """\
all:
  vars:
    serverguard_collectors: {enable: [nope]}
  hosts:
    web1: {ansible_host: 127.0.0.1, ansible_port: 1}
"""


def test_an_inventory_the_sweeps_cannot_start_from_stops_serve_before_it_starts(
    started: list[dict[str, Any]], tmp_path: Path
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(BAD_COLLECTORS)
    result = run_serve("-i", str(inventory), "--vm-url", "http://127.0.0.1:1")
    assert isinstance(result.exception, ConfigError), result.output
    assert str(result.exception).startswith(
        "host web1: serverguard_collectors: unknown collector 'nope'")
    assert started == [] and "First start" not in result.output
    assert not (tmp_path / "state" / "serverguard.db").exists()
    # without collection the inventory's collector settings do not matter: the API serves
    result = run_serve("-i", str(inventory), "--no-collect")
    assert result.exit_code == 0, result.output
    assert len(started) == 1


def test_the_collection_starts_from_the_inventory_serve_checked(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(INVENTORY)
    settings = fast_settings(tmp_path, inventory=[str(inventory)], collect=True,
                             vm_url="http://127.0.0.1:1")
    checked = check_collection([str(inventory)], settings)
    inventory.write_text(BAD_COLLECTORS)  # edited between the check and the start
    db = Database.from_settings(settings)
    db.migrate()
    try:
        app = create_app(settings, database=db, inventory=checked)
        with TestClient(app):
            collection = app.state.serverguard.collection
            assert collection.inventory is checked and collection.hosts == len(checked.hosts)
    finally:
        db.dispose()
