"""``serverguard inventory list|hosts|check`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible_oracle import list_argv, run_cli
from inventory_helpers import WriteFile
from rich.console import Console
from typer.testing import CliRunner

from orchestrator.cli import inventory_cmd
from orchestrator.errors import InventoryError

CORPUS = Path(__file__).resolve().parents[2] / "inventory_corpus"
runner = CliRunner()

INV = """
all:
  vars:
    ansible_user: ops
  children:
    bastions:
      hosts:
        bastion1:
          ansible_host: 192.0.2.1
    web:
      hosts:
        web1:
          ansible_host: 10.0.0.11
          serverguard_jump: bastion1
        web2:
          ansible_port: 2222
        web3:
          serverguard_jump: "[fe80::1]:2222"
"""


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory_cmd, "console", Console(width=200, highlight=False))


def test_list_json_prints_exactly_what_ansible_inventory_prints() -> None:
    source = str(CORPUS / "unicode")
    result = runner.invoke(inventory_cmd.app, ["list", "-i", source, "--json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == run_cli(list_argv([source])).stdout


def test_list_json_with_limit(write: WriteFile) -> None:
    path = write("inv.yml", INV)
    result = runner.invoke(inventory_cmd.app, ["list", "-i", path, "--json", "-l", "web2"])
    listed = json.loads(result.stdout)
    assert listed["web"] == {"hosts": ["web2"]} and "bastions" not in listed
    assert list(listed["_meta"]["hostvars"]) == ["web2"]


def test_list_table(write: WriteFile, wide_console: None) -> None:
    path = write("inv.yml", INV)
    result = runner.invoke(inventory_cmd.app, ["list", "-i", path])
    assert result.exit_code == 0, result.output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]]
            for line in result.stdout.splitlines() if line.startswith("│")]
    assert rows == [
        ["bastion1", "192.0.2.1", "22", "ops", "bastions", ""],
        ["web1", "10.0.0.11", "22", "ops", "web", "bastion1"],
        ["web2", "web2", "2222", "ops", "web", ""],
        ["web3", "web3", "22", "ops", "web", "[fe80::1]:2222"],
    ]


def test_hosts_like_ansible_list_hosts(write: WriteFile) -> None:
    path = write("inv.yml", INV)
    result = runner.invoke(inventory_cmd.app, ["hosts", "-i", path, "web:!web2:nosuch"])
    assert result.exit_code == 0
    assert result.stdout == "  hosts (2):\n    web1\n    web3\n"
    assert "Could not match supplied host pattern, ignoring: nosuch" in result.stderr


def test_hosts_json_and_limit(write: WriteFile) -> None:
    path = write("inv.yml", INV)
    write("failed.txt", "web3\nbastion1\n")
    result = runner.invoke(inventory_cmd.app,
                           ["hosts", "-i", path, "--limit", "@failed.txt", "--json", "all"])
    assert json.loads(result.stdout) == ["bastion1", "web3"]


def test_hosts_nothing_matched(write: WriteFile) -> None:
    path = write("inv.yml", INV)
    result = runner.invoke(inventory_cmd.app, ["hosts", "-i", path, "db"])
    assert (result.exit_code, result.stdout) == (0, "  hosts (0):\n")
    assert "no hosts matched" in result.stderr


def test_check_ok_with_warnings(write: WriteFile) -> None:
    path = write("inv.yml", INV + "        web4:\n          ansible_password: hunter2\n")
    result = runner.invoke(inventory_cmd.app, ["check", "-i", path])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "warning: host 'web4': ansible_password is stored in plain text in the inventory (the "
        "value is not shown); prefer serverguard_password_env: NAME",
        "ok: 5 hosts, 4 groups, 1 warning",
    ]
    assert "hunter2" not in result.output


def test_check_errors_exit_non_zero(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  vars: x\n  hosts:\n    web1:\n  host:\n    web2:\n")
    result = runner.invoke(inventory_cmd.app, ["check", "-i", path])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "error: inv.yml:2:9: group 'web': 'vars' must be a mapping of variable names to "
        "values, got a string",
        "warning: inv.yml:5:3: group 'web': unknown key 'host' (expected hosts, vars, children)",
        "1 error, 1 warning",
    ]


def test_check_json(write: WriteFile) -> None:
    path = write("inv.yml", "all:\n  hosts:\n    h1:\n      ansible_port: nope\n")
    result = runner.invoke(inventory_cmd.app, ["check", "-i", path, "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["hosts"] == 1
    assert [p["text"] for p in report["problems"]] == [
        "host 'h1': ansible_port: 'nope' is not a port number (1-65535)"]


def test_load_errors_reach_the_main_handler(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  hosts: [a]\n")
    result = runner.invoke(inventory_cmd.app, ["hosts", "-i", path, "all"])
    assert isinstance(result.exception, InventoryError)
    assert str(result.exception).startswith("inv.yml:2:10: group 'web': 'hosts' must be")
