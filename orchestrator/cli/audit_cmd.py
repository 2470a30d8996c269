"""``serverguard audit verify|export``: check the audit chain, or copy it out."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from orchestrator import audit
from orchestrator.cli.common import console, err_console
from orchestrator.errors import AuditChainError, StorageError
from orchestrator.storage.db import Database
from orchestrator.storage.settings import ServiceSettings

app = typer.Typer(help="The audit log: verify its hash chain, export it as JSON lines.",
                  no_args_is_help=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="Default: $SERVERGUARD_DATABASE_URL, else the SQLite "
                 "file under the state directory."),
]


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[Database]:
    """The database, with its errors as one line (this tool never creates or migrates)."""
    db = Database(url or ServiceSettings().resolved_database_url)
    try:
        yield db
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        hint = " (no audit log here: not a ServerGuard database, or never started)" if (
            "audit" in first and ("no such table" in first or "does not exist" in first)
        ) else ""
        raise StorageError(f"database {db.display_url}: {first}{hint}") from exc
    finally:
        db.dispose()


@app.command()
def verify(
    database_url: DatabaseOpt = None,
    from_file: Annotated[Path | None, typer.Option(
        "--file", help="Verify an exported copy (JSON lines) instead of the database.")] = None,
) -> None:
    """Check every entry's hash and link; name the first bad one (exit 1).

    Prints the chain's head hash: keep it elsewhere to detect a rewritten chain later.
    """
    try:
        if from_file is not None:
            with from_file.open(encoding="utf-8") as fh:
                report = audit.verify_entries(audit.read_jsonl(fh), check_head=False)
        else:
            with _database(database_url) as db:
                report = audit.verify_database(db)
    except AuditChainError as exc:
        err_console.print(f"[bold red]audit chain broken:[/] {escape(str(exc))}",
                          soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(f"audit chain ok: {report.entries} entries, last {report.last_id}, "
                  f"head {report.head_hash}", soft_wrap=True)


@app.command("export")
def export(
    database_url: DatabaseOpt = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="File to write (default: standard output).")] = None,
) -> None:
    """Write every entry, oldest first, as one JSON object per line (hashes included)."""
    with _database(database_url) as db:
        if output is None:
            count = audit.export_jsonl(db, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as fh:
                count = audit.export_jsonl(db, fh)
    err_console.print(f"{count} audit entries exported")
