"""Fan-out: one command on many hosts at once, bounded by ``forks``.

Every host gets an ``ExecResult``: connection failures become ``error`` on that host's result
instead of stopping the run, and each host is bounded by its own connect timeout plus the
command timeout, so one dead or hanging host never delays the others beyond that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from inventory.targets import ConnectionTarget
from orchestrator.errors import SSHError
from orchestrator.ssh.exec import ExecResult, OutputCallback
from orchestrator.ssh.pool import ConnectionPool

log = logging.getLogger(__name__)

ResultCallback = Callable[[ExecResult], None]


@dataclass(frozen=True, slots=True)
class FanoutSummary:
    total: int
    ok: int
    failed: int  # ran, but non-zero exit, signal or timeout
    unreachable: int  # never ran: connect, auth, host key or channel failure
    wall_s: float

    @property
    def exit_code(self) -> int:
        """Like ansible: 4 when a host was unreachable, 2 when one failed, else 0."""
        if self.unreachable:
            return 4
        return 2 if self.failed else 0


def summarize(results: Sequence[ExecResult], wall_s: float) -> FanoutSummary:
    unreachable = sum(1 for r in results if r.rc is None and r.extra.get("unreachable"))
    ok = sum(1 for r in results if r.ok)
    return FanoutSummary(
        total=len(results),
        ok=ok,
        failed=len(results) - ok - unreachable,
        unreachable=unreachable,
        wall_s=wall_s,
    )


async def run_on_host(
    pool: ConnectionPool,
    target: ConnectionTarget,
    command: str,
    *,
    timeout: float | None,
    max_output: int | None = None,
    on_output: OutputCallback | None = None,
) -> ExecResult:
    started = time.perf_counter()
    try:
        return await pool.run(
            target, command, timeout=timeout, max_output=max_output, on_output=on_output
        )
    except SSHError as exc:
        result = ExecResult(host=target.name, error=str(exc))
        result.extra["unreachable"] = True
        result.extra["error_type"] = type(exc).__name__
    result.duration_s = time.perf_counter() - started
    return result


async def fan_out(
    pool: ConnectionPool,
    targets: Sequence[ConnectionTarget],
    command: str,
    *,
    forks: int,
    timeout: float | None = None,
    max_output: int | None = None,
    on_output: OutputCallback | None = None,
    on_result: ResultCallback | None = None,
) -> tuple[list[ExecResult], FanoutSummary]:
    """Run ``command`` on every target; results come back in the targets' order."""
    slots = asyncio.Semaphore(max(1, forks))
    started = time.perf_counter()

    async def one(target: ConnectionTarget) -> ExecResult:
        async with slots:
            result = await run_on_host(
                pool, target, command, timeout=timeout, max_output=max_output,
                on_output=on_output,
            )
        if on_result is not None:
            on_result(result)
        return result

    results = list(await asyncio.gather(*(one(t) for t in targets)))
    return results, summarize(results, time.perf_counter() - started)
