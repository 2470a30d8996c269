"""The ``serverguard`` command: a thin sync shell over the async engine.

Every command takes ``-i/--inventory``, ``--limit`` and ``--json`` where they make sense;
errors from the engine are shown as one line, never as a traceback.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError
from rich.markup import escape

from orchestrator.cli import (
    audit_cmd,
    collect_cmd,
    inventory_cmd,
    lab_cmd,
    playbook_cmd,
    run_cmd,
    serve_cmd,
)
from orchestrator.cli.common import err_console
from orchestrator.errors import ServerGuardError

app = typer.Typer(
    name="serverguard",
    help="Agentless operations over SSH: inventory, fan-out commands, metrics, playbooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(inventory_cmd.app, name="inventory")
app.add_typer(lab_cmd.app, name="lab")
app.command("run", context_settings={"allow_interspersed_args": False})(run_cmd.run)
app.command("collect")(collect_cmd.collect)
app.command("playbook")(playbook_cmd.playbook)
app.command("serve")(serve_cmd.serve)
app.add_typer(audit_cmd.app, name="audit")


SETTINGS_MODELS = ("Settings", "ServiceSettings")


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per bad setting, naming its environment variable; never the value (it may
    be a password or a database URL)."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"SERVERGUARD_{field.upper()}" if field else "settings"
        lines.append(f"{name}: {error['msg']}")
    return lines


def main() -> None:
    try:
        app()
    except ServerGuardError as exc:
        # one line whatever the terminal's width: scripts and logs match on it
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except ValidationError as exc:  # Settings read from SERVERGUARD_* environment variables
        if exc.title not in SETTINGS_MODELS:
            raise
        for line in settings_errors(exc):
            err_console.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
