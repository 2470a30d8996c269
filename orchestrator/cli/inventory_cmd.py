"""``serverguard inventory list|hosts|check``: the inventory as ServerGuard (and Ansible) sees it.

    serverguard inventory list -i inv.yml --json     # exactly ``ansible-inventory --list``
    serverguard inventory hosts -i inv.yml 'web:&prod' --limit @failed.txt
    serverguard inventory check -i inv.yml            # every warning and error; exit 1 on errors
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from inventory import Inventory, check_inventory, load_inventory
from orchestrator.cli.common import (
    InventoryOpt,
    JsonOpt,
    LimitOpt,
    console,
    err_console,
    inventory_paths,
)
from orchestrator.settings import Settings

app = typer.Typer(help="Show and check the inventory.", no_args_is_help=True)


class _WarningPrinter(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[yellow]warning:[/] {escape(record.getMessage())}", markup=True,
                          highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _inventory_warnings_on_stderr(*, show: bool = True) -> Iterator[None]:
    """Show the inventory package's warnings once, on stderr, whatever logging is set up
    (``show=False``: not at all, the command prints them itself)."""
    logger = logging.getLogger("inventory")
    handler = _WarningPrinter(logging.WARNING) if show else logging.NullHandler()
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def _write_json(data: Any, *, indent: int | None = 4) -> None:
    # Plain stdout, not rich: nothing wrapped or highlighted.
    typer.echo(json.dumps(data, sort_keys=True, indent=indent, ensure_ascii=False))


def _load(inventory: list[Any] | None) -> tuple[Inventory, Settings]:
    settings = Settings()
    return load_inventory(inventory_paths(inventory, settings)), settings


@app.command("list")
def list_hosts(inventory: InventoryOpt = None, limit: LimitOpt = None,
               json_output: JsonOpt = False) -> None:
    """Every host with address, port, user, groups and jump hosts (``--json``: the JSON of
    ``ansible-inventory --list``)."""
    with _inventory_warnings_on_stderr():
        inv, settings = _load(inventory)
        if json_output:
            typer.echo(inv.to_ansible_json(limit))
            return
        names = inv.select("all", limit) if limit else inv.hosts
        table = Table(title=f"{len(names)} hosts", title_justify="left")
        for column in ("host", "address", "port", "user", "groups", "jump"):
            table.add_column(column, no_wrap=column in ("host", "address"))
        for name in names:
            target = inv.target(name, default_policy=settings.host_key_policy)
            cells = (name, target.address, str(target.port), target.user or "",
                     ", ".join(inv.group_names(name)), " -> ".join(target.hop_names))
            table.add_row(*(escape(c) for c in cells))
        console.print(table)


@app.command("hosts")
def hosts(
    pattern: Annotated[str, typer.Argument(help="Ansible host pattern, e.g. 'web:&prod:!web3'.")],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """The hosts a pattern selects, like ``ansible PATTERN --list-hosts``."""
    with _inventory_warnings_on_stderr():
        inv, _ = _load(inventory)
        found = inv.match(pattern, limit)
    for text in found.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(text)}", markup=True, highlight=False,
                          soft_wrap=True)
    if not found.hosts:
        err_console.print("[yellow]warning:[/] no hosts matched", markup=True)
    if json_output:
        _write_json(found.hosts, indent=None)
        return
    typer.echo(f"  hosts ({len(found.hosts)}):")
    for name in found.hosts:
        typer.echo(f"    {name}")


@app.command("check")
def check(inventory: InventoryOpt = None, json_output: JsonOpt = False) -> None:
    """Read the inventory and resolve every host; print each problem, exit 1 on errors."""
    settings = Settings()
    with _inventory_warnings_on_stderr(show=False):
        report = check_inventory(inventory_paths(inventory, settings))
    inv = report.inventory
    if json_output:
        _write_json({
            "ok": report.ok,
            "hosts": len(inv.hosts) if inv else None,
            "groups": len(inv.groups) if inv else None,
            "problems": [p.to_dict() for p in report.problems],
        })
    else:
        for problem in report.problems:
            label = "[bold red]error:[/]" if problem.is_error else "[yellow]warning:[/]"
            console.print(f"{label} {escape(str(problem))}", markup=True, highlight=False,
                          soft_wrap=True)
        errors = len(report.errors)
        warnings = len(report.problems) - errors
        if inv is not None and not errors:
            console.print(f"ok: {len(inv.hosts)} hosts, {len(inv.groups)} groups, "
                          f"{warnings} warning{'s' if warnings != 1 else ''}", highlight=False)
        else:
            console.print(f"{errors} error{'s' if errors != 1 else ''}, "
                          f"{warnings} warning{'s' if warnings != 1 else ''}", highlight=False)
    if not report.ok:
        raise typer.Exit(code=1)
