"""``serverguard lab up|down|status``: the local lab of real sshd hosts (see docs/lab.md)."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from orchestrator.cli.common import JsonOpt, console
from orchestrator.lab import Lab, LabSpec, LabStatus, Teardown
from orchestrator.settings import Settings

app = typer.Typer(
    help="The local lab: real sshd hosts in network namespaces, with a bastion and a "
    "private subnet behind it.",
    no_args_is_help=True,
)


class ModeChoice(StrEnum):
    auto = "auto"
    netns = "netns"
    loopback = "loopback"


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def _status_table(status: LabStatus) -> Table:
    table = Table(
        title=f"lab in {status.lab_dir} ({status.mode} mode)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in ("name", "role", "address", "jump", "sshd", "state"):
        table.add_column(column, no_wrap=True)
    rows = status.hosts
    i = 0
    while i < len(rows):
        row = rows[i]
        same = [r for r in rows[i:] if r.machine == row.machine]
        name = row.name
        if row.role == "loopback" and len(same) > 1:
            name = f"{same[0].name}..{same[-1].name}"
        table.add_row(
            name,
            row.role,
            f"{row.address}:{row.port}",
            ",".join(row.jump) or "-",
            str(row.sshd_pid or "-"),
            "[green]up[/]" if row.alive else "[red]down[/]",
        )
        i += len(same) if row.role == "loopback" else 1
    return table


@app.command()
def up(
    hosts: Annotated[int, typer.Option(min=0, help="Public hosts host01..")] = 3,
    private: Annotated[int, typer.Option(min=0, help="Hosts behind the bastion")] = 2,
    deep: Annotated[int, typer.Option(min=0, help="Hosts behind bastion -> bastion2")] = 1,
    loopback_hosts: Annotated[
        int, typer.Option(min=0, help="Inventory entries lo001.. all on one loopback sshd")
    ] = 0,
    mode: Annotated[
        ModeChoice, typer.Option(help="netns needs root; loopback: sshds on 127.0.0.1 ports")
    ] = ModeChoice.auto,
    replace: Annotated[
        bool, typer.Option("--replace", help="Tear down a lab that is already up first")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Build the lab and write its inventory."""
    lab = Lab(Settings())
    spec = LabSpec(
        hosts=hosts, private=private, deep=deep, loopback_hosts=loopback_hosts, mode=mode.value
    )
    if json_out:
        _echo_json(lab.up(spec, replace=replace).to_dict())
        return
    started = time.monotonic()
    with console.status("building the lab") as spinner:

        def progress(message: str) -> None:
            console.print(f"[dim]{time.monotonic() - started:5.1f}s[/] {message}")
            spinner.update(message)

        info = lab.up(spec, replace=replace, progress=progress)
    console.print(_status_table(lab.status()))
    if not info.isolated:
        console.print(
            "[yellow]loopback mode: no network isolation[/] (private and deep hosts are "
            "reachable directly; tests that need isolation skip)"
        )
    console.print(f"inventory: [bold]{info.inventory_path}[/]", soft_wrap=True)
    console.print(
        f"try:       serverguard run -i {info.inventory_path} all -- uptime", soft_wrap=True
    )


@app.command()
def down(json_out: JsonOpt = False) -> None:
    """Remove every process, namespace, link, mount and file of the lab."""
    lab = Lab(Settings())
    result = lab.down()
    if json_out:
        _echo_json(result.to_dict())
        return
    _print_teardown(result, lab)


def _print_teardown(result: Teardown, lab: Lab) -> None:
    if result.empty:
        console.print(f"nothing to remove: no lab in {lab.dir}")
    labels = (
        ("process", "processes", result.processes),
        ("network namespace", "network namespaces", result.netns),
        ("link", "links", result.links),
        ("route", "routes", result.routes),
        ("mount", "mounts", result.mounts),
        ("directory", "directories", result.files),
    )
    for one, many, items in labels:
        if items:
            more = f", ... ({len(items) - 6} more)" if len(items) > 6 else ""
            shown = ", ".join(items[:6]) + more
            console.print(f"removed {len(items)} {one if len(items) == 1 else many}: {shown}")
    for item in result.kept:
        console.print(f"[yellow]left alone[/]: {item} (use that lab's 'lab down')")


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """Show every lab host: role, address, jump chain, sshd pid, up or down."""
    lab = Lab(Settings())
    result = lab.status()
    if json_out:
        _echo_json(result.to_dict())
        return
    if not result.up and not result.hosts:
        console.print(f"no lab in {lab.dir} (start one with 'serverguard lab up')")
        return
    console.print(_status_table(result))
    if result.inventory_path:
        console.print(f"inventory: {result.inventory_path}", soft_wrap=True)
