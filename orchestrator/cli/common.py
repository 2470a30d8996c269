"""Options and consoles shared by the CLI commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from inventory import Inventory, load_inventory
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

InventoryOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "-i",
        "--inventory",
        help="Inventory file or directory (repeatable). Default: $SERVERGUARD_INVENTORY, "
        "else the lab's inventory when the lab is up.",
        show_default=False,
    ),
]
LimitOpt = Annotated[
    str | None,
    typer.Option("-l", "--limit", help="Further limit the hosts (pattern, or @file)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        min=1,
        help="Hosts that start their sweeps together (1: each its own start time). "
        "Default: $SERVERGUARD_COLLECT_BATCH, else 20.",
        show_default=False,
    ),
]


def inventory_paths(given: list[Path] | None, settings: Settings) -> list[str]:
    """The inventory sources to read: ``-i`` values, else settings, else the lab's file."""
    if given:
        return [str(p) for p in given]
    if settings.inventory:
        return list(settings.inventory)
    lab_inventory = settings.lab_dir / "inventory.yml"
    if lab_inventory.exists():
        return [str(lab_inventory)]
    raise ConfigError(
        "no inventory: pass -i FILE, set SERVERGUARD_INVENTORY, or run 'serverguard lab up'"
    )


def select_hosts(
    given: list[Path] | None, settings: Settings, pattern: str, limit: str | None
) -> tuple[Inventory, list[str]]:
    """Load the inventory and the hosts ``pattern`` (and ``--limit``) select; none is an error."""
    inv = load_inventory(inventory_paths(given, settings))
    names = inv.select(pattern, limit=limit)
    if not names:
        raise ConfigError(f"pattern {pattern!r} matches no host")
    return inv, names
