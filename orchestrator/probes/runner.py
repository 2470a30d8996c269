"""Run probes: pick the vantage point, bound the time, never raise for a failed probe.

    async with ConnectionPool(settings) as pool:
        specs = load_probes(inventory)
        for spec, samples, failure in await run_probes(specs, pool, inventory, concurrency=20):
            if failure:
                print(failure)        # probe 'api' (http http://... from bastion): status 503...

Every sample carries ``job`` (``probe`` unless configured), ``instance`` (the target as
written), ``probe`` (its name) and ``vantage`` (``orchestrator`` or the inventory host), plus
the probe's own ``labels``. Each run also reports ``probe_success``,
``probe_duration_seconds`` and ``serverguard_probe_vantage_up`` (0 when the vantage host
could not be reached, so alerts can tell "service down" from "bastion down").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncssh

from collectors.sample import Sample
from inventory import Inventory
from orchestrator.errors import InventoryError
from orchestrator.probes.dns import probe_dns
from orchestrator.probes.http import probe_http
from orchestrator.probes.result import ProbeFailed, ProbeFailure, ProbeMetrics, ProbeResult
from orchestrator.probes.spec import ORCHESTRATOR, ProbeSpec
from orchestrator.probes.tcp import probe_tcp
from orchestrator.probes.transport import (
    Dialer,
    LocalDialer,
    SSHDialer,
    VantageError,
    describe_error,
)
from orchestrator.ssh.pool import ConnectionPool

log = logging.getLogger(__name__)

Prober = Callable[[ProbeSpec, Dialer, ProbeMetrics], Awaitable[None]]
PROBERS: dict[str, Prober] = {
    "tcp": probe_tcp,
    "tls": probe_tcp,
    "http": probe_http,
    "dns": probe_dns,
}


class _NoVantage(Exception):
    pass


def _dialer(spec: ProbeSpec, pool: ConnectionPool | None, inventory: Inventory | None) -> Dialer:
    if spec.vantage == ORCHESTRATOR:
        return LocalDialer()
    if inventory is None or pool is None:
        raise _NoVantage(f"vantage host {spec.vantage!r} needs an inventory and an SSH pool")
    try:
        target = inventory.target(spec.vantage)
    except InventoryError as exc:
        raise _NoVantage(f"vantage host {spec.vantage!r}: {exc}") from exc
    return SSHDialer(pool, target)


async def run_probe_result(
    spec: ProbeSpec,
    pool: ConnectionPool | None = None,
    inventory: Inventory | None = None,
) -> ProbeResult:
    """Run one probe within ``spec.timeout``; the result says why it failed, if it did."""
    m = ProbeMetrics()
    started = time.perf_counter()
    reason: str | None = None
    vantage_up = True
    try:
        dialer = _dialer(spec, pool, inventory)
        async with asyncio.timeout(spec.timeout):
            await PROBERS[spec.type](spec, dialer, m)
    except ProbeFailed as exc:
        reason = exc.reason
    except TimeoutError:
        reason = f"timed out after {spec.timeout:g}s {m.stage}"
    except (VantageError, _NoVantage) as exc:
        reason, vantage_up = f"vantage unreachable: {exc}", False
    except (OSError, asyncssh.Error) as exc:
        reason = describe_error(exc)
    except Exception as exc:  # a bug must not stop the other probes of a sweep
        log.exception("%s: unexpected error", spec.describe())
        reason = f"internal error: {type(exc).__name__}: {exc}"
    duration = time.perf_counter() - started
    head = ProbeMetrics()
    head.set("probe_success", 0 if reason else 1)
    head.set("probe_duration_seconds", duration)
    head.set("serverguard_probe_vantage_up", 1 if vantage_up else 0)
    labels = spec.series_labels()
    samples = [s.with_labels(**labels) for s in (*head.samples(), *m.samples())]
    failure = None
    if reason is not None:
        failure = ProbeFailure(spec, reason, vantage_error=not vantage_up)
        log.info("%s", failure)
    return ProbeResult(spec, reason is None, duration, samples, failure)


async def run_probe(
    spec: ProbeSpec,
    pool: ConnectionPool | None = None,
    inventory: Inventory | None = None,
) -> list[Sample]:
    """The samples of one probe run. A failed probe is ``probe_success 0`` (reason logged);
    this never raises for it.

    >>> samples = asyncio.run(run_probe(ProbeSpec("web", "tcp", "127.0.0.1:9")))  # doctest: +SKIP
    >>> [s.value for s in samples if s.name == "probe_success"]  # doctest: +SKIP
    [0.0]
    """
    return (await run_probe_result(spec, pool, inventory)).samples


async def run_probes(
    specs: Sequence[ProbeSpec],
    pool: ConnectionPool | None = None,
    inventory: Inventory | None = None,
    *,
    concurrency: int = 20,
) -> list[tuple[ProbeSpec, list[Sample], ProbeFailure | None]]:
    """Run ``specs`` with at most ``concurrency`` at once; results in the order given.

    Per vantage host, the SSH pool's channel slots bound concurrency further.
    """
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(spec: ProbeSpec) -> ProbeResult:
        async with slots:
            return await run_probe_result(spec, pool, inventory)

    results = await asyncio.gather(*(one(s) for s in specs))
    return [(r.spec, r.samples, r.failure) for r in results]
