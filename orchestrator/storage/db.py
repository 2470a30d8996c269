"""The database: one engine, short sessions, migrations applied on start.

SQLite (the default, a file under the state directory) runs in WAL mode so readers never
wait for the writer; PostgreSQL is used when ``SERVERGUARD_DATABASE_URL`` names it
(``postgresql+psycopg://user@host/db``; a bare ``postgresql://`` gets the psycopg driver).

Example::

    db = Database.from_settings(settings)
    db.migrate()
    with db.session() as session:
        session.exec(select(User)).all()
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session

from orchestrator.errors import ConfigError, StorageError
from orchestrator.storage.settings import ServiceSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant will do: it names the lock that serializes migrations and audit appends.
PG_MIGRATION_LOCK = 0x5347_4D49  # "SGMI"
PG_AUDIT_LOCK = 0x5347_4155  # "SGAU"


def normalize_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database URL {url!r} is not a valid URL") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"database URL: unsupported backend {backend!r} "
                          "(use sqlite:///PATH or postgresql://...)")
    return parsed


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe in WAL mode
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")  # the writer lock is waited for, not failed
    cur.close()


class Database:
    """An engine plus what the rest of the service needs from it."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # SQLite has one writer: appends to the audit chain queue here first, in-process.
        self.write_lock = threading.Lock()
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = sa.create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30}
            )
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = sa.create_engine(
                self.url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Database:
        return cls(settings.resolved_database_url, pool_size=settings.database_pool_size)

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return self.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session; commit explicitly, anything uncommitted is rolled back on exit."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (``alembic upgrade head``), in-process.

        On PostgreSQL an advisory lock makes concurrent starts (several shards) wait for
        each other instead of racing on the same DDL.
        """
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                if not self.is_sqlite:
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                                 {"k": PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except OperationalError as exc:
            raise StorageError(f"database {self.display_url}: cannot migrate: "
                               f"{_first_line(exc)}") from exc

    def check(self) -> None:
        """Raise :class:`StorageError` unless the database answers."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except OperationalError as exc:
            raise StorageError(f"database {self.display_url}: {_first_line(exc)}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
