"""``serverguard playbook PLAYBOOK``: run a playbook with live progress and a recap.

Exit status as ansible-playbook's: 0 ok, 1 error, 2 a host failed, 4 a host was unreachable
(or a playbook that cannot be parsed), 5 bad options; 99 canceled (Ctrl-C), 124 timed out.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator.cli.common import InventoryOpt, JsonOpt, LimitOpt, console, err_console
from orchestrator.cli.common import inventory_paths as _inventory_paths
from orchestrator.errors import ConfigError, PlaybookError, PlaybookSyntaxError
from orchestrator.playbooks import (
    PlaybookConfig,
    PlaybookEvent,
    PlaybookRun,
    Tuning,
    parse_extra_vars,
    run_async,
    shipped_playbooks,
)
from orchestrator.settings import Settings

EXIT_PARSE_ERROR = 4
EXIT_BAD_OPTIONS = 5


class Progress:
    """What the live line shows, fed from the run's thread."""

    def __init__(self, run: PlaybookRun, printer: Any) -> None:
        self.run = run
        self.task = "starting"
        self.counts = {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0}
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.printer = printer  # prints one line above the live display

    def on_event(self, event: PlaybookEvent) -> None:
        with self.lock:
            if event.kind == "task_start" and event.task:
                self.task = event.task
            elif event.kind == "host_result" and event.status in self.counts:
                self.counts[str(event.status)] += 1
        if event.kind == "host_result":
            self._note(event)

    def _note(self, event: PlaybookEvent) -> None:
        host = escape(event.host or "?")
        task = escape(event.task or "")
        if event.status == "failed":
            self.printer(f"[red]failed[/]      {host}: {task}: {escape(event.message or '')}")
        elif event.status == "unreachable":
            self.printer(f"[bold red]unreachable[/] {host}: {escape(event.message or '')}")
        elif event.action in ("debug", "ansible.builtin.debug") and "msg" in event.result:
            msg = event.result["msg"]
            text = msg if isinstance(msg, str) else json.dumps(msg, sort_keys=True)
            self.printer(f"[cyan]note[/]        {host}: {escape(text)}")

    def render(self) -> Text:
        with self.lock:
            c = dict(self.counts)
            task = self.task
        elapsed = time.monotonic() - self.started
        line = Text()
        line.append(f"{elapsed:5.0f}s ", style="dim")
        line.append(f"{task[:60]:<60} ", style="bold")
        line.append(f"{c['ok']} ok ", style="green")
        line.append(f"{c['changed']} changed ", style="yellow")
        line.append(f"{c['failed']} failed ", style="red")
        line.append(f"{c['unreachable']} unreachable", style="bold red")
        return line


def _recap(run: PlaybookRun) -> Table:
    status = {
        "successful": "[green]successful[/]", "failed": "[red]failed[/]",
        "timeout": "[red]timed out[/]", "canceled": "[yellow]canceled[/]",
    }.get(str(run.status), str(run.status))
    table = Table(title=f"PLAY RECAP  {escape(run.playbook.name)}: {status}  "
                        f"(strategy {run.plan.strategy}, forks {run.plan.forks}, run {run.id})",
                  title_justify="left")
    columns = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
    table.add_column("host")
    for col in columns:
        table.add_column(col, justify="right")
    styles = {"changed": "yellow", "unreachable": "bold red", "failed": "red"}
    for host in sorted(run.stats):
        counts = run.stats[host].to_dict()
        cells = []
        for col in columns:
            value = counts[col]
            style = styles.get(col) if value else None
            cells.append(f"[{style}]{value}[/]" if style else str(value))
        table.add_row(escape(host), *cells)
    return table


def _json_result(run: PlaybookRun) -> dict[str, Any]:
    out = run.summary()
    out["failures"] = [
        {"host": e.host, "task": e.task, "status": e.status, "message": e.message}
        for e in run.host_results() if e.status in ("failed", "unreachable")
    ]
    out["notes"] = [
        {"host": e.host, "task": e.task, "msg": e.result.get("msg")}
        for e in run.host_results()
        if e.action in ("debug", "ansible.builtin.debug") and "msg" in e.result
    ]
    return out


def playbook(
    playbook: Annotated[str, typer.Argument(
        help="A playbook file, or the name of a shipped one: "
             + ", ".join(shipped_playbooks()), show_default=False)],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    extra_vars: Annotated[list[str] | None, typer.Option(
        "-e", "--extra-vars", help="NAME=VALUE, JSON/YAML, or @FILE (repeatable).")] = None,
    tags: Annotated[str | None, typer.Option(
        "-t", "--tags", help="Only tasks with these tags (comma-separated).")] = None,
    skip_tags: Annotated[str | None, typer.Option(
        "--skip-tags", help="Skip tasks with these tags (comma-separated).")] = None,
    check: Annotated[bool, typer.Option(
        "-C", "--check", help="Change nothing; report what would change.")] = False,
    diff: Annotated[bool, typer.Option("-D", "--diff", help="Show file differences.")] = False,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Stop the whole run after this many seconds.")] = None,
    forks: Annotated[int | None, typer.Option(
        "-f", "--forks", help="Hosts at once (default: the number of hosts).")] = None,
    strategy: Annotated[str, typer.Option(
        "--strategy", help="auto (mitogen where it works), linear, free, mitogen_linear...")
    ] = "auto",
    verbose: Annotated[int, typer.Option(
        "-v", "--verbose", count=True,
        help="Ansible's verbosity, as ansible-playbook's -v (-vvv: connection details).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Run a playbook (a file, or a shipped one) on the inventory's hosts."""
    settings = Settings()
    try:
        config = PlaybookConfig(
            playbook=playbook,
            inventory=_inventory_paths(inventory, settings),
            limit=limit,
            extra_vars=parse_extra_vars(extra_vars or []),
            tags=tuple(t for t in (tags or "").split(",") if t),
            skip_tags=tuple(t for t in (skip_tags or "").split(",") if t),
            check=check,
            diff=diff,
            timeout=timeout,
            verbosity=verbose,
            tuning=Tuning(strategy=strategy, forks=forks),
        )
        run = run_async(config, settings)
    except (PlaybookSyntaxError, ConfigError, PlaybookError) as exc:
        code = (EXIT_PARSE_ERROR if isinstance(exc, PlaybookSyntaxError)
                else EXIT_BAD_OPTIONS if isinstance(exc, ConfigError) else 1)
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        if json_out:  # a script reading stdout gets an answer too
            sys.stdout.write(json.dumps({"status": "error", "exit_code": code,
                                         "error": str(exc)}, indent=2) + "\n")
        raise typer.Exit(code) from None

    live = not json_out and err_console.is_terminal

    def say(line: str) -> None:
        if not json_out:
            err_console.print(line, soft_wrap=True)

    progress = Progress(run, say)
    run.subscribe(progress.on_event)
    shown = len(run.warnings)
    for warning in run.warnings:
        say(f"[yellow]warning:[/] {escape(warning)}")
    try:
        if live:
            with Live(progress.render(), console=err_console, transient=True,
                      refresh_per_second=4) as display:
                while run.wait(0.25) is not None and not run.status.finished:
                    display.update(progress.render())
        else:
            run.wait()
    except KeyboardInterrupt:
        say("[yellow]canceling ...[/]")
        run.cancel()
        run.wait()

    if json_out:
        sys.stdout.write(json.dumps(_json_result(run), indent=2, default=str) + "\n")
    else:
        for error in run.errors:
            say(f"[bold red]error:[/] {escape(error)}")
        said = set(run.warnings[:shown])
        for warning in [*run.warnings[shown:], *run.ansible_warnings]:
            if warning not in said:  # ansible-playbook repeats a --limit warning of ours
                said.add(warning)
                say(f"[yellow]warning:[/] {escape(warning)}")
        console.print(_recap(run))
    raise typer.Exit(run.exit_code if run.exit_code is not None else 1)
