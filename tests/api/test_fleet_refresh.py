"""The fleet summary's snapshot is refreshed in the background: callers keep getting the
previous one (up to ``ttl + max_stale`` old) instead of all waiting for VictoriaMetrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator.errors import MetricsError
from orchestrator.fleet import FleetMetrics, FleetSnapshot


class ControlledFleet(FleetMetrics):
    """Snapshots come when the test says so (no VictoriaMetrics needed)."""

    def __init__(self, **kw: float) -> None:
        super().__init__("http://127.0.0.1:9", **kw)
        self.taken = 0
        self.gate = asyncio.Event()
        self.fail = False

    async def _take_snapshot(self) -> FleetSnapshot:
        self.taken += 1
        number = self.taken
        await self.gate.wait()
        self.gate.clear()
        if self.fail:
            raise MetricsError("VictoriaMetrics is unreachable")
        return FleetSnapshot({"web1": {"up": float(number)}}, time.monotonic())


async def first_snapshot(fleet: ControlledFleet) -> FleetSnapshot:
    waiting = asyncio.ensure_future(fleet.snapshot())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # nothing to answer from yet: the first caller waits
    fleet.gate.set()
    return await waiting


async def test_a_stale_snapshot_is_served_while_one_refresh_runs() -> None:
    fleet = ControlledFleet(ttl=0.05, max_stale=10)
    try:
        first = await first_snapshot(fleet)
        assert await fleet.snapshot() is first and fleet.taken == 1  # fresh: no refresh
        await asyncio.sleep(0.06)
        # Stale: answered at once from the previous snapshot, one refresh under way.
        assert await fleet.snapshot() is first
        assert await fleet.snapshot() is first
        await asyncio.sleep(0.01)
        assert fleet.taken == 2  # one refresh, not one per caller
        fleet.gate.set()
        await asyncio.sleep(0.01)
        second = await fleet.snapshot()
        assert second is not first and second.values["web1"]["up"] == 2.0
    finally:
        fleet.close()


async def test_past_max_stale_callers_wait_for_the_refresh() -> None:
    fleet = ControlledFleet(ttl=0.05, max_stale=0)
    try:
        first = await first_snapshot(fleet)
        await asyncio.sleep(0.06)
        waiting = asyncio.ensure_future(fleet.snapshot())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        fleet.gate.set()
        assert (await waiting) is not first
    finally:
        fleet.close()


async def test_a_failed_refresh_keeps_the_previous_snapshot_until_max_stale() -> None:
    fleet = ControlledFleet(ttl=0.05, max_stale=0.3)
    try:
        first = await first_snapshot(fleet)
        fleet.fail = True
        await asyncio.sleep(0.06)
        assert await fleet.snapshot() is first  # refresh started in the background...
        fleet.gate.set()
        await asyncio.sleep(0.01)
        assert await fleet.snapshot() is first  # ...failed; the old one still serves
        await asyncio.sleep(0.3)
        waiting = asyncio.ensure_future(fleet.snapshot())  # too old now: the error shows
        await asyncio.sleep(0.01)
        fleet.gate.set()
        with pytest.raises(MetricsError):
            await waiting
    finally:
        fleet.close()


async def test_closing_cancels_a_refresh_nobody_waits_for() -> None:
    fleet = ControlledFleet(ttl=0.05, max_stale=10)
    await first_snapshot(fleet)
    await asyncio.sleep(0.06)
    await fleet.snapshot()  # starts a background refresh
    refresh = fleet._refresh
    assert refresh is not None and not refresh.done()
    fleet.close()
    await asyncio.sleep(0)
    assert refresh.cancelled()
