"""``serverguard playbook`` on the lab: JSON output, recap and exit codes as ansible-playbook's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

CLI = str(Path(sys.executable).parent / "serverguard")


def serverguard(lab: Any, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state"),
           "SERVERGUARD_USER_KNOWN_HOSTS": str(tmp_path / "none"), "COLUMNS": "120"}
    return subprocess.run([CLI, "playbook", "-i", str(lab.inventory_path), *args],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


def test_json_output_and_recap(lab: Any, tmp_path: Path) -> None:
    proc = serverguard(lab, tmp_path, "sysctl_baseline.yml", "--limit", "host01,private01",
                       "-e", "ansible_user=root", "-e", "sysctl_profile=web", "--check",
                       "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "successful" and out["exit_code"] == 0 and out["check"] is True
    assert sorted(out["stats"]) == ["host01", "private01"]
    assert out["strategy"].startswith("mitogen") and out["extra_vars"] == [
        "ansible_user", "sysctl_profile"]
    assert any("read-only here" in str(n["msg"]) for n in out["notes"])
    assert (Path(out["dir"]) / "events.jsonl").stat().st_size > 0

    human = serverguard(lab, tmp_path, "sysctl_baseline", "-l", "host01", "-C",
                        "-e", "ansible_user=root")
    assert human.returncode == 0, human.stderr
    assert "PLAY RECAP" in human.stdout and "host01" in human.stdout


def test_exit_code_for_failed_hosts(lab: Any, tmp_path: Path) -> None:
    proc = serverguard(lab, tmp_path, "time_sync", "-l", "host01", "-e", "ansible_user=root",
                       "-e", "time_sync_timezone=Mars/Olympus_Mons")
    assert proc.returncode == 2, proc.stderr
    assert "unknown time zone Mars/Olympus_Mons" in proc.stderr
