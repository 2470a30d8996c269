"""The ``serverguard`` command: a thin sync shell over the async engine.

Every command takes ``-i/--inventory``, ``--limit`` and ``--json`` where they make sense;
errors from the engine are shown as one line, never as a traceback.

Exit status, as ansible-playbook's: 0 all went well, 1 an error (bad inventory, settings,
...), 2 something failed on a host (a command, a task, a probe), 4 a host was unreachable
or down, 5 the command line itself is wrong (an unknown option, a missing argument; click's
own code for that is 2, which here would read as a failure on a host), 130 interrupted.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from typer.core import TyperGroup

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

EXIT_USAGE = 5
# click's UsageError, which typer (0.2x) carries a copy of: found from a public subclass
_UsageError: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"
)


class _Commands(TyperGroup):
    """Usage errors exit with ``EXIT_USAGE`` (see the module docstring)."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except _UsageError as exc:
            exc.exit_code = EXIT_USAGE  # type: ignore[attr-defined]
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as exc:  # a subcommand's options and arguments
            exc.exit_code = EXIT_USAGE  # type: ignore[attr-defined]
            raise


app = typer.Typer(
    cls=_Commands,
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
