"""Sweeps through the sweep reader (a python3 kept on the host) against the lab's real sshd
processes: two hops, a host without python3, a timeout, a reader killed on the host."""

from __future__ import annotations

import pytest

from collectors.base import Collector, Options, Samples
from collectors.registry import default_registry
from inventory import load_inventory
from inventory.targets import ConnectionTarget
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.ssh.reader import BOOTSTRAP
from orchestrator.sweep import HostSweep, Sweeper

pytestmark = pytest.mark.lab


def target(lab, name: str) -> ConnectionTarget:
    inv = load_inventory([str(lab.inventory_path)])
    return inv.targets(inv.select(name))[0]


def series(sweep: HostSweep) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.name, s.labels) for s in sweep.samples if not s.name.startswith("serverguard_")}


def healthy(sweep: HostSweep | None) -> HostSweep:
    assert sweep is not None and sweep.up, sweep and sweep.error
    failed = {n: r.problems for n, r in sweep.reports.items() if not r.success}
    assert failed == {}
    return sweep


class Sleeper(Collector):
    """A collector whose command hangs (it has no reader operation: run by sh)."""

    name = "sleeper"

    def command(self, options: Options) -> str:
        return "sleep 61"

    def parse(self, stdout: str, options: Options) -> Samples:
        return Samples()


async def test_two_hops_through_the_reader_same_series_as_the_sh_script(lab, settings) -> None:
    t = target(lab, "deep01")
    cols = default_registry().defaults()
    async with ConnectionPool(settings) as pool:
        by_reader = Sweeper(pool, cols)
        sent: list[int] = []
        first = healthy(await by_reader.sweep(t))
        # the lab's python3 is recent enough to parse its own output
        assert first.to_json()["via"] == "reader (python3), parsed on the host"
        assert first.rendered and first.sample_count == len(first.samples) > 250
        reader = pool.reader(t)
        assert reader is not None and reader.unavailable is None and reader.opened == 1
        chan = reader._chan
        assert chan is not None
        write = chan.write

        def counted(data: bytes) -> None:
            sent.append(len(data))
            write(data)

        chan.write = counted  # type: ignore[method-assign]
        for _ in range(3):
            healthy(await by_reader.sweep(t))
        assert reader.opened == 1 and len(sent) == 3 and max(sent) < 80, sent
        # the sh script in the persistent shell: the same series
        by_sh = healthy(await Sweeper(pool, cols, python=None).sweep(t))
        assert by_sh.via == "sh script"
        assert series(first) == series(by_sh)
        # the reader's raw output, parsed here: the same series again
        raw = healthy(await Sweeper(pool, cols, parse_on_host=False).sweep(t))
        assert raw.via == "reader (python3)" and not raw.rendered
        assert series(first) == series(raw)
        values = {s.name: s.value for s in first.samples if len(s.labels) == 2}
        assert values["node_memory_MemTotal_bytes"] > 0 and values["node_time_seconds"] > 0


@pytest.mark.parametrize(("python", "why"), [
    ("/nonexistent/python3", "no such program"),
    ("/bin/false", "/bin/false could not run it: no output"),  # exits at once, says nothing
])
async def test_a_host_without_python3_gets_the_sh_script(lab, settings, python, why) -> None:
    t = target(lab, "private01")
    async with ConnectionPool(settings) as pool:
        sweeper = Sweeper(pool, default_registry().defaults(), python=python)
        for _ in range(2):
            swept = healthy(await sweeper.sweep(t))
            assert swept.via is not None and swept.via.startswith("sh script (no sweep reader: ")
            assert why in swept.via  # collect --once --json tells the user why
        reader = pool.reader(t)
        assert reader is not None and reader.opened == 1  # asked once, not every sweep
        assert why in (reader.unavailable or "")
        session = await pool.session(t)
        assert session.runs == 2 and session.shells_opened == 1


async def test_a_timeout_kills_the_reader_and_the_next_sweep_opens_one(lab, settings) -> None:
    t = target(lab, "host01")
    async with ConnectionPool(settings) as pool:
        hung = await Sweeper(pool, [Sleeper()], timeout=1).sweep(t)
        assert hung is not None and not hung.up and "timed out" in (hung.error or "")
        healthy(await Sweeper(pool, default_registry().defaults()).sweep(t))
        reader = pool.reader(t)
        assert reader is not None and reader.opened == 2 and reader.unavailable is None
        # the hung command went with the reader it ran under (SIGTERM: its process group)
        assert lab.lab.host_exec("host01", ["pgrep", "-f", "sleep 61"]).stdout == ""


async def test_a_reader_killed_on_the_host_is_replaced(lab, settings) -> None:
    t = target(lab, "host02")
    async with ConnectionPool(settings) as pool:
        sweeper = Sweeper(pool, default_registry().defaults())
        healthy(await sweeper.sweep(t))
        reader = pool.reader(t)
        assert reader is not None
        killed = lab.lab.host_exec("host02", ["pkill", "-KILL", "-f", BOOTSTRAP[:15]])
        assert killed.returncode == 0
        # the sweep that finds it gone runs the sh script: the host stays up
        healthy(await sweeper.sweep(t))
        assert reader.crashes == 1 and reader.unavailable is None
        healthy(await sweeper.sweep(t))
        assert reader.opened == 2
