"""When the collection loop starts each host's sweep: in groups, spread over the interval."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from inventory.targets import ConnectionTarget
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.sweep import MIN_TICK, CollectionLoop, Sweeper, offset_for, start_slots

ROOT = Path(__file__).resolve().parents[2]


def loop_over(
    n: int, *, interval: float, batch: int | None, tmp_path: Path
) -> CollectionLoop:
    """A loop over ``n`` hosts; nothing connects: only start times are asked for."""
    pool = ConnectionPool(Settings(state_dir=tmp_path))
    targets = [ConnectionTarget(name=f"web{i:05d}", address="192.0.2.1") for i in range(n)]
    half = n // 2  # two sweepers (two scripts), as plan_sweeps makes for mixed settings
    jobs = [(Sweeper(pool, []), targets[:half]), (Sweeper(pool, []), targets[half:])]

    async def sink(_: object) -> None:
        return None

    if batch is None:
        return CollectionLoop(jobs, sink, interval=interval)
    return CollectionLoop(jobs, sink, interval=interval, batch=batch)


def test_hosts_start_in_groups_of_about_batch_spread_over_the_interval(tmp_path: Path) -> None:
    offsets = loop_over(200, interval=15.0, batch=50, tmp_path=tmp_path).offsets()
    assert len(offsets) == 200
    groups = Counter(offsets.values())
    # 200 hosts / 50 = 4 start times, a quarter of the interval apart, over both sweepers
    assert sorted(groups) == [0.0, 3.75, 7.5, 11.25]
    assert all(25 <= size <= 75 for size in groups.values()), groups


def test_by_default_groups_of_the_settings_batch(tmp_path: Path) -> None:
    offsets = loop_over(200, interval=15.0, batch=None, tmp_path=tmp_path).offsets()
    assert Settings().collect_batch == 20
    assert sorted(Counter(offsets.values())) == [i * 1.5 for i in range(10)]


def test_the_layout_is_told_in_words(tmp_path: Path) -> None:
    assert loop_over(200, interval=15.0, batch=None, tmp_path=tmp_path).describe() == (
        "in 10 groups of about 20")
    assert loop_over(3, interval=15.0, batch=None, tmp_path=tmp_path).describe() == (
        "in 1 group of about 3")
    assert loop_over(50, interval=15.0, batch=1, tmp_path=tmp_path).describe() == (
        "each host at its own time")


def test_start_times_stay_put_across_restarts(tmp_path: Path) -> None:
    first = loop_over(200, interval=15.0, batch=50, tmp_path=tmp_path).offsets()
    again = loop_over(200, interval=15.0, batch=50, tmp_path=tmp_path).offsets()
    assert first == again
    # a host's group is its hash's quarter of the interval, whatever the other hosts are
    assert all(offset_for(name, 15.0, 4) == offset for name, offset in first.items())


def test_batch_one_gives_every_host_its_own_start_time(tmp_path: Path) -> None:
    offsets = loop_over(200, interval=15.0, batch=1, tmp_path=tmp_path).offsets()
    assert len(set(offsets.values())) == 200
    assert all(0.0 <= o < 15.0 for o in offsets.values())
    assert max(offsets.values()) - min(offsets.values()) > 14.0  # the whole interval


def test_a_small_fleet_starts_together(tmp_path: Path) -> None:
    offsets = loop_over(3, interval=15.0, batch=50, tmp_path=tmp_path).offsets()
    assert set(offsets.values()) == {0.0}


def test_a_large_fleet_never_starts_groups_closer_than_the_minimum_tick() -> None:
    # 10,000 hosts every 2 s in groups of 50 would be 200 start times 10 ms apart
    slots = start_slots(10_000, 2.0, 50)
    assert slots == int(2.0 / MIN_TICK) == 20
    offsets = {offset_for(f"h{i}", 2.0, slots) for i in range(10_000)}
    assert len(offsets) == 20
    steps = sorted(offsets)
    assert all(b - a == pytest.approx(MIN_TICK) for a, b in itertools.pairwise(steps))


@pytest.mark.parametrize(
    ("args", "env", "status", "message"),
    [
        (["--batch", "0"], {}, 5, "Invalid value for '--batch'"),
        ([], {"SERVERGUARD_COLLECT_BATCH": "0"}, 1,
         "SERVERGUARD_COLLECT_BATCH: Input should be greater than or equal to 1"),
        ([], {"SERVERGUARD_COLLECT_BATCH": "many"}, 1,
         "SERVERGUARD_COLLECT_BATCH: Input should be"),
    ],
)
def test_a_bad_batch_is_one_clear_line(
    tmp_path: Path, args: list[str], env: dict[str, str], status: int, message: str
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    web1: {ansible_host: 192.0.2.1}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "collect", "-i", str(inventory),
         "--once", "--print", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state"), **env},
    )
    assert proc.returncode == status
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
