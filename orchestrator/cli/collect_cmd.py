"""``serverguard collect``: metric sweeps, once or forever, into VictoriaMetrics or stdout."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from inventory import Inventory
from inventory.targets import ConnectionTarget
from orchestrator.cli.common import (
    BatchOpt,
    InventoryOpt,
    JsonOpt,
    LimitOpt,
    console,
    err_console,
    select_hosts,
)
from orchestrator.errors import ConfigError
from orchestrator.metrics.backend import MetricsBackend
from orchestrator.probes.config import probes_from_file, probes_from_inventory
from orchestrator.probes.schedule import ProbeLoop, ProbeRound, probe_round
from orchestrator.probes.spec import ProbeSpec
from orchestrator.runtime import tune_gc
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.sweep import CollectionLoop, HostSweep, Sweeper
from orchestrator.sweep_plan import SweepGroup, plan_sweeps


def collect(
    pattern: Annotated[str, typer.Argument(help="Host pattern.")] = "all",
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    once: Annotated[bool, typer.Option("--once", help="One sweep, then exit.")] = False,
    print_: Annotated[
        bool, typer.Option("--print", help="Write Prometheus text to stdout; store nothing.")
    ] = False,
    vm_url: Annotated[
        str | None,
        typer.Option("--vm-url", help="VictoriaMetrics URL (default: an embedded child)."),
    ] = None,
    interval: Annotated[float | None, typer.Option(
        help="Seconds between sweeps of a host. Default: $SERVERGUARD_COLLECT_INTERVAL, "
             "else 15.")] = None,
    timeout: Annotated[float | None, typer.Option(
        help="Seconds per host and sweep. Default: $SERVERGUARD_COLLECT_TIMEOUT, "
             "else 10.")] = None,
    batch: BatchOpt = None,
    enable: Annotated[
        str | None, typer.Option(help="Also run these default-off collectors (comma list).")
    ] = None,
    disable: Annotated[str | None, typer.Option(help="Skip these collectors (comma list).")] = None,
    probes_file: Annotated[
        Path | None,
        typer.Option("--probes", help="Probes YAML file (besides serverguard_probes in the "
                     "inventory)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Collect node_exporter-compatible metrics from every host matching PATTERN, and run
    the probes defined in the inventory or --probes.

    Exit status with --once: 0 when all is well, 4 when a host is down, 2 when a probe failed
    (1: an error such as a bad inventory; 5: a wrong command line).
    """
    for option, seconds in (("--interval", interval), ("--timeout", timeout)):
        if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"{option} {seconds:g}: must be a finite number of seconds > 0")
    if print_ and not once:
        raise ConfigError("--print needs --once")
    if json_out and (print_ or not once):
        raise ConfigError("--json is the summary of --once, without --print (which writes "
                          "Prometheus text)")
    settings = Settings()  # SERVERGUARD_COLLECT_* first, then the options given
    given = {"collect_interval": interval, "collect_timeout": timeout}
    settings = settings.model_copy(update={k: v for k, v in given.items() if v is not None})
    if batch is not None:
        settings = settings.model_copy(update={"collect_batch": batch})
    inv, names = select_hosts(inventory, settings, pattern, limit)
    groups = plan_sweeps(
        inv, names, enable=_names(enable), disable=_names(disable),
        default_policy=settings.host_key_policy,
    )
    specs = probes_from_inventory(inv, hosts=names)  # the probes of the hosts selected
    if probes_file is not None:
        specs += probes_from_file(probes_file, inventory=inv)
    if once:
        sweeps, probed = asyncio.run(_once(settings, groups, inv, specs, print_, vm_url))
        if print_:
            batches: list[HostSweep | ProbeRound] = [*sweeps, *([probed] if probed else [])]
            for done in batches:
                for s in done.samples:
                    sys.stdout.write(s.exposition(done.timestamp_ms) + "\n")
            for sweep in sweeps:  # stdout is the text; why a host is down goes to stderr
                if sweep.error:
                    err_console.print(f"[red]{escape(sweep.host)}:[/] {escape(sweep.error)}",
                                      soft_wrap=True)
        elif json_out:
            report = {
                "hosts": [s.to_json() for s in sweeps],
                "probes_failed": [
                    {"probe": spec.name, "vantage": spec.vantage, "target": spec.target,
                     "reason": failure.reason}
                    for spec, failure in (probed.failures if probed else [])
                ],
            }
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
        else:
            console.print(_table(sweeps))
            for spec, failure in probed.failures if probed else []:
                console.print(f"[red]probe {spec.name} from {spec.vantage} failed:[/] "
                              f"{escape(failure.reason)}")
        if not all(s.up for s in sweeps):
            raise typer.Exit(4)
        raise typer.Exit(2 if probed and probed.failures else 0)
    try:
        asyncio.run(_forever(settings, groups, inv, specs, vm_url))
    except KeyboardInterrupt:
        err_console.print("stopped")


def _names(text: str | None) -> list[str]:
    return [n.strip() for n in (text or "").split(",") if n.strip()]


def sweepers(
    pool: ConnectionPool, groups: list[SweepGroup], settings: Settings
) -> list[tuple[Sweeper, list[ConnectionTarget]]]:
    return [
        (Sweeper(pool, g.collectors, g.options, timeout=settings.collect_timeout,
                 python=g.python, parse_on_host=g.parse_on_host), g.targets)
        for g in groups
    ]


async def _once(
    settings: Settings,
    groups: list[SweepGroup],
    inv: Inventory,
    specs: list[ProbeSpec],
    print_only: bool,
    vm_url: str | None,
) -> tuple[list[HostSweep], ProbeRound | None]:
    async with ConnectionPool(settings) as pool:
        jobs = sweepers(pool, groups, settings)
        tune_gc()  # as the collection loop does (orchestrator.runtime)
        parts = await asyncio.gather(*(s.sweep_all(targets) for s, targets in jobs))
        sweeps = [sweep for part in parts for sweep in part]
        probed = await probe_round(specs, pool, inv) if specs else None
        if not print_only:
            async with MetricsBackend(settings, vm_url=vm_url) as backend:
                for sweep in sweeps:
                    await backend.sink(sweep)
                if probed is not None:
                    await backend.sink(probed)
        return sweeps, probed


async def _forever(
    settings: Settings,
    groups: list[SweepGroup],
    inv: Inventory,
    specs: list[ProbeSpec],
    vm_url: str | None,
) -> None:
    async with (
        ConnectionPool(settings) as pool,
        MetricsBackend(settings, vm_url=vm_url) as backend,
    ):
        jobs = sweepers(pool, groups, settings)
        loop = CollectionLoop(jobs, backend.sink, interval=settings.collect_interval,
                              batch=settings.collect_batch)
        hosts = sum(len(g.targets) for g in groups)
        err_console.print(
            f"collecting from {hosts} hosts every {settings.collect_interval:g}s "
            f"({loop.describe()}) into {backend.shown_url} (Ctrl-C stops)"
        )
        probes = ProbeLoop(specs, pool, inv, backend.sink, interval=settings.collect_interval)
        loop.start()
        probes.start()
        try:
            await asyncio.Event().wait()
        finally:
            await probes.stop()
            await loop.stop()


def _table(sweeps: list[HostSweep]) -> Table:
    up = sum(1 for s in sweeps if s.up)
    table = Table(title=f"{up} of {len(sweeps)} hosts up", title_justify="left")
    for col in ("host", "up", "samples", "time", "problems"):
        table.add_column(col)
    for s in sweeps:
        noted = sum(len(r.notes) for r in s.reports.values())
        problems = s.error or ", ".join(
            [*s.failed_collectors, *([f"{noted} note(s): --json"] if noted else [])])
        table.add_row(
            s.host,
            "[green]1[/]" if s.up else "[red]0[/]",
            str(s.sample_count),
            f"{s.duration_s:.3f}s",
            problems,
        )
    return table
