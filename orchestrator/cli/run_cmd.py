"""``serverguard run PATTERN -- COMMAND``: ad-hoc fan-out with live progress."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from inventory.targets import ConnectionTarget
from orchestrator.cli.common import (
    InventoryOpt,
    JsonOpt,
    LimitOpt,
    console,
    err_console,
    select_hosts,
)
from orchestrator.errors import ConfigError
from orchestrator.executor import FanoutSummary, fan_out
from orchestrator.settings import Settings
from orchestrator.ssh.exec import ExecResult
from orchestrator.ssh.pool import ConnectionPool


class LineStream:
    """Prefixes complete lines with their host as output arrives (``--stream``)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.partial: dict[tuple[str, str], bytes] = {}

    def feed(self, host: str, stream: str, data: bytes) -> None:
        key = (host, stream)
        buf = self.partial.get(key, b"") + data
        *lines, rest = buf.split(b"\n")
        self.partial[key] = rest
        for line in lines:
            self._emit(host, stream, line)

    def flush(self, host: str) -> None:
        for stream in ("stdout", "stderr"):
            rest = self.partial.pop((host, stream), b"")
            if rest:
                self._emit(host, stream, rest)

    def _emit(self, host: str, stream: str, line: bytes) -> None:
        text = escape(line.decode("utf-8", errors="backslashreplace"))
        style = "red" if stream == "stderr" else "cyan"
        console.print(f"[{style}]{host:<{self.width}}[/] | {text}", soft_wrap=True)


def _status(result: ExecResult) -> str:
    if result.ok:
        return "[green]ok[/]"
    if result.extra.get("unreachable"):
        return "[bold red]unreachable[/]"
    return "[red]failed[/]"


def _table(results: list[ExecResult], summary: FanoutSummary) -> Table:
    table = Table(
        title=f"{summary.ok} ok, {summary.failed} failed, {summary.unreachable} unreachable "
        f"of {summary.total} hosts in {summary.wall_s:.2f}s",
        title_justify="left",
    )
    for col in ("host", "status", "rc", "time", "output"):
        table.add_column(col, overflow="fold", no_wrap=col != "output")
    for r in results:
        raw = r.error or (r.stdout if r.stdout.strip() else r.stderr)
        text = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        lines = text.strip().replace("\r", "").splitlines()
        more = f"\n… {len(lines) - 5} more lines" if len(lines) > 5 else ""
        shown = escape("\n".join(lines[:5]) + more)
        if r.truncated:
            shown += "\n[yellow](output truncated)[/]"
        table.add_row(
            r.host,
            _status(r),
            "" if r.rc is None else str(r.rc),
            f"{r.duration_s:.2f}s",
            shown,
        )
    return table


def run(
    pattern: Annotated[str, typer.Argument(help="Host pattern, as in ansible (web:&prod).")],
    command: Annotated[
        list[str], typer.Argument(help="The command to run (after --), through the login shell.")
    ],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: Annotated[int, typer.Option("-f", "--forks", help="Hosts at once.")] = 50,
    timeout: Annotated[
        float, typer.Option("-t", "--timeout", help="Seconds per host for the command.")
    ] = 60.0,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", help="Seconds to reach each host.")
    ] = 10.0,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print output lines prefixed by host as they arrive.")
    ] = False,
    max_output: Annotated[
        int, typer.Option("--max-output", help="Bytes kept per stream per host.")
    ] = 4 * 1024 * 1024,
    json_out: JsonOpt = False,
) -> None:
    """Run a command on every host matching PATTERN, in parallel.

    Exit status: 0 all ok, 2 a command failed or timed out, 4 a host was unreachable
    (1: an error such as a bad inventory; 5: a wrong command line).
    """
    if command and command[0] == "--":  # click keeps it once positional parsing has begun
        command = command[1:]
    if not command:
        raise ConfigError("no command given: serverguard run PATTERN -- COMMAND")
    if forks < 1 or timeout <= 0 or connect_timeout <= 0:
        raise ConfigError("--forks, --timeout and --connect-timeout must be positive")
    settings = Settings(connect_timeout=connect_timeout, max_output_bytes=max_output)
    inv, names = select_hosts(inventory, settings, pattern, limit)
    targets = inv.targets(names, default_policy=settings.host_key_policy)
    cmd = command[0] if len(command) == 1 else " ".join(command)
    results, summary = asyncio.run(
        _run(settings, targets, cmd, forks, timeout, stream and not json_out, json_out)
    )
    if json_out:
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    else:
        console.print(_table(results, summary))
    raise typer.Exit(summary.exit_code)


async def _run(
    settings: Settings,
    targets: list[ConnectionTarget],
    cmd: str,
    forks: int,
    timeout: float,
    stream: bool,
    quiet: bool,
) -> tuple[list[ExecResult], FanoutSummary]:
    width = max(len(t.name) for t in targets)
    lines = LineStream(width) if stream else None
    show_progress = not quiet and not stream and err_console.is_terminal
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[green]{task.fields[ok]} ok[/] [red]{task.fields[failed]} failed[/]"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not show_progress,
    )
    task = progress.add_task(cmd[:40], total=len(targets), ok=0, failed=0)
    counts = {"ok": 0, "failed": 0}

    def on_result(result: ExecResult) -> None:
        counts["ok" if result.ok else "failed"] += 1
        progress.update(task, advance=1, ok=counts["ok"], failed=counts["failed"])
        if lines is not None:
            lines.flush(result.host)
            if result.error:
                err_console.print(f"[red]{result.host:<{width}}[/] ! {escape(result.error)}")

    async with ConnectionPool(settings) as pool:
        with progress:
            return await fan_out(
                pool, targets, cmd, forks=forks, timeout=timeout,
                on_output=lines.feed if lines else None, on_result=on_result,
            )
