"""What `serverguard collect --once` tells the user beyond the samples: notes, why a host is
down (on stderr with --print, stdout being the Prometheus text)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.script import CollectorReport
from orchestrator.cli.collect_cmd import _table
from orchestrator.sweep import HostSweep

ROOT = Path(__file__).resolve().parents[2]


def test_notes_are_in_the_json_and_pointed_at_in_the_table() -> None:
    report = CollectorReport("textfile", True, 0.01, 0, notes=[
        "/var/lib/node_exporter/a.prom:3: reserved metric name up (set by ServerGuard)"])
    sweep = HostSweep("web1", 0, True, 0.2, [], (), None, {"textfile": report})
    assert sweep.to_json()["notes"] == {"textfile": report.notes}
    assert sweep.to_json()["failed_collectors"] == {}
    table = _table([sweep])
    assert list(table.columns[-1].cells) == ["1 note(s): --json"]


def test_print_says_on_stderr_why_a_host_is_down(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  vars: {ansible_user: sg}\n  hosts:\n"
                         "    web1: {ansible_host: 127.0.0.1, ansible_port: 1}\n")
    proc = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli.main import main; main()",
         "collect", "-i", str(inventory), "--once", "--print"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        env={**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 4
    assert proc.stdout.startswith('up{instance="web1",job="node"} 0 ')
    assert proc.stderr.startswith("web1: ") and "refused" in proc.stderr.lower(), proc.stderr


def test_a_bad_enable_is_blamed_on_the_option_not_on_a_host(tmp_path: Path) -> None:
    from inventory import load_inventory
    from orchestrator.errors import ConfigError
    from orchestrator.sweep_plan import plan_sweeps

    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    web1: {ansible_host: 127.0.0.1}\n")
    inv = load_inventory([str(inventory)])
    with pytest.raises(ConfigError) as caught:
        plan_sweeps(inv, ["web1"], enable=["nope"])
    assert str(caught.value).startswith("--enable/--disable: unknown collector 'nope' (known: ")
    assert len(plan_sweeps(inv, ["web1"], enable=["processes"])) == 1
