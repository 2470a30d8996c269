"""`serverguard collect` and `serve`: bad input is one line of error and exit 1, never a
traceback: non-finite --interval/--timeout, and (serve) an inventory the sweeps cannot start
from, refused before the database or the server is touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from orchestrator.cli import collect_cmd, serve_cmd
from orchestrator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
NOPE = """\
all:
  vars:
    ansible_user: sg
    serverguard_collectors: {enable: [nope]}
  hosts:
    web1: {ansible_host: 127.0.0.1, ansible_port: 1}
"""


def invoke(command: object, *args: str) -> BaseException | None:
    app = typer.Typer()
    app.command()(command)
    return CliRunner().invoke(app, list(args)).exception


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SERVERGUARD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SERVERGUARD_PASSWORD_HASH_MEMORY_KIB", "64")
    monkeypatch.setenv("SERVERGUARD_PASSWORD_HASH_TIME_COST", "1")
    monkeypatch.setenv("SERVERGUARD_PASSWORD_HASH_PARALLELISM", "1")
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)  # never a real server

    async def forever(*args: object) -> None:  # nor an endless collection
        return None

    monkeypatch.setattr(collect_cmd, "_forever", forever)
    path = tmp_path / "inv.yml"
    path.write_text(NOPE.replace("    serverguard_collectors: {enable: [nope]}\n", ""))
    return path


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
@pytest.mark.parametrize("option", ["--interval", "--timeout"])
def test_collect_refuses_seconds_that_are_not_finite_and_positive(
    inventory: Path, option: str, value: str
) -> None:
    exc = invoke(collect_cmd.collect, "-i", str(inventory), "--vm-url", "http://127.0.0.1:1",
                 option, value)
    assert isinstance(exc, ConfigError), repr(exc)
    assert str(exc) == f"{option} {float(value):g}: must be a finite number of seconds > 0"


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_serve_refuses_an_interval_that_is_not_finite_and_positive(
    inventory: Path, value: str
) -> None:
    exc = invoke(serve_cmd.serve, "-i", str(inventory), "--vm-url", "http://127.0.0.1:1",
                 "--interval", value)
    assert isinstance(exc, ConfigError), repr(exc)
    assert "--interval" in str(exc) and "finite number of seconds > 0" in str(exc)


def serverguard(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli.main import main; main()", *args],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False,
    )


@pytest.mark.parametrize(("text", "message"), [
    (NOPE, "error: host web1: serverguard_collectors: unknown collector 'nope'"),
    ("all:\n  hosts: [\n", "YAML syntax error"),
])
def test_serve_with_an_inventory_that_cannot_be_collected_is_one_line(
    tmp_path: Path, text: str, message: str
) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(text)
    done = serverguard(tmp_path, "serve", "--port", "18777", "-i", str(inv),
                       "--vm-url", "http://127.0.0.1:1")
    assert done.returncode == 1, done.stderr
    assert message in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not (tmp_path / "state").exists()  # no database, no admin account: nothing started


def test_collect_with_a_nan_interval_is_one_line(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text(NOPE)
    done = serverguard(tmp_path, "collect", "-i", str(inv), "--vm-url", "http://127.0.0.1:1",
                       "--interval", "nan")
    assert done.returncode == 1
    assert done.stderr == "error: --interval nan: must be a finite number of seconds > 0\n"


def test_collect_takes_interval_and_timeout_from_the_environment(
    inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SERVERGUARD_COLLECT_INTERVAL/TIMEOUT count unless the option is given; the option wins."""
    seen: list[tuple[float, float]] = []

    async def forever(settings: object, *args: object) -> None:
        seen.append((settings.collect_interval, settings.collect_timeout))  # type: ignore[attr-defined]

    monkeypatch.setattr(collect_cmd, "_forever", forever)
    monkeypatch.setenv("SERVERGUARD_COLLECT_INTERVAL", "2")
    monkeypatch.setenv("SERVERGUARD_COLLECT_TIMEOUT", "3")
    url = ("--vm-url", "http://127.0.0.1:1")
    assert invoke(collect_cmd.collect, "-i", str(inventory), *url) is None
    assert invoke(collect_cmd.collect, "-i", str(inventory), *url, "--interval", "7") is None
    assert seen == [(2.0, 3.0), (7.0, 3.0)]


@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_a_bad_collect_setting_in_the_environment_is_one_line(tmp_path: Path,
                                                              value: str) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(NOPE.replace("    serverguard_collectors: {enable: [nope]}\n", ""))
    proc = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli.main import main; main()",
         "collect", "-i", str(inventory), "--once", "--print"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        env={**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state"),
             "SERVERGUARD_COLLECT_TIMEOUT": value})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: SERVERGUARD_COLLECT_TIMEOUT: "), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and value not in proc.stderr


@pytest.mark.parametrize("args", [("--json",), ("--json", "--once", "--print")])
def test_collect_json_only_with_once_and_without_print(inventory: Path,
                                                      args: tuple[str, ...]) -> None:
    exc = invoke(collect_cmd.collect, "-i", str(inventory), "--vm-url", "http://127.0.0.1:1",
                 *args)
    assert isinstance(exc, ConfigError) and "--json is the summary of --once" in str(exc)
