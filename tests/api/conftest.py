"""Fixtures for the API, storage and audit tests.

* ``database`` is parametrized: SQLite (a file in a temp dir) and PostgreSQL. PostgreSQL is
  the server named by ``SERVERGUARD_TEST_POSTGRES_URL`` (it must allow CREATE DATABASE),
  else a throwaway cluster this session starts itself (unix socket only) when the
  PostgreSQL binaries are installed; otherwise those cases skip with the reason.
* ``lab_api`` is the app on the lab's own inventory file (as ``serve -i`` reads it), an
  admin signed up; for the tests that reach the lab's real hosts.
* ``api`` builds the app with ``create_app(settings)`` on a fresh database, overrides the
  inventory dependency with a small inventory loaded once per session, and hands out
  clients signed in as users of each role.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import INVENTORY, ApiHarness, fast_settings, make_api
from sqlmodel import SQLModel

from inventory import Inventory, load_inventory
from orchestrator.storage.db import Database

# ---------------------------------------------------------------------------- inventory


@pytest.fixture(scope="session")
def inventory_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api-inventory") / "inventory.yml"
    path.write_text(INVENTORY)
    return path


@pytest.fixture(scope="session")
def test_inventory(inventory_path: Path) -> Inventory:
    return load_inventory([str(inventory_path)])


# ---------------------------------------------------------------------------- databases


def _pg_bindir() -> str | None:
    for candidate in [os.path.dirname(shutil.which("initdb") or ""),
                      *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]:
        if candidate and os.access(os.path.join(candidate, "initdb"), os.X_OK) and \
                os.access(os.path.join(candidate, "pg_ctl"), os.X_OK):
            return candidate
    return None


class _Cluster:
    """A throwaway PostgreSQL cluster listening on a unix socket only."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.dir = tempfile.mkdtemp(prefix="serverguard-pg-")
        self.data = os.path.join(self.dir, "data")
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
            shutil.chown(self.dir, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.dir, 0o755)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=60)

    def start(self) -> str:
        self._run(f"{self.bindir}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        options = (f"-k {self.dir} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-l", f"{self.dir}/log", "-w",
                  "-o", options, "start")
        return f"postgresql+psycopg://postgres@/postgres?host={self.dir}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL URL allowed to create databases, or a skip saying why there is none."""
    given = os.environ.get("SERVERGUARD_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql) and "
                    "SERVERGUARD_TEST_POSTGRES_URL is not set")
    cluster: _Cluster | None = None
    try:
        cluster = _Cluster(bindir)
        url = cluster.start()
    except (subprocess.SubprocessError, OSError, LookupError) as exc:  # LookupError: no user
        if cluster is not None:
            cluster.stop()
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"cannot start a throwaway PostgreSQL cluster: {exc} "
                    f"{detail.decode(errors='replace')[:200]}")
    try:
        yield url
    finally:
        cluster.stop()


def _admin_connect(url: str) -> Any:
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return psycopg.connect(
        dbname=parsed.database or "postgres", user=parsed.username, password=parsed.password,
        host=parsed.query.get("host") or parsed.host, port=parsed.port, autocommit=True,
    )


@contextlib.contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    from sqlalchemy.engine import make_url

    name = f"sg_test_{uuid.uuid4().hex[:12]}"
    with _admin_connect(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connect(admin_url) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_shared(postgres_admin_url: str) -> Iterator[Database]:
    """One migrated PostgreSQL database for the session, emptied before each test
    (TRUNCATE is far cheaper than CREATE DATABASE)."""
    with fresh_postgres_database(postgres_admin_url) as url:
        db = Database(url)
        db.migrate()
        try:
            yield db
        finally:
            db.dispose()


def truncate_all(db: Database) -> None:
    tables = [t.name for t in SQLModel.metadata.sorted_tables]
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "serverguard.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'serverguard.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    with fresh_postgres_database(admin_url) as url:
        yield url


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty database of each backend."""
    if backend == "sqlite":
        path = tmp_path / "serverguard.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        db = Database(f"sqlite:///{path}")
        try:
            yield db
        finally:
            db.dispose()
        return
    shared: Database = request.getfixturevalue("postgres_shared")
    truncate_all(shared)
    yield shared


# ---------------------------------------------------------------------------- the app


@pytest.fixture
def api(database: Database, tmp_path: Path, test_inventory: Inventory) -> Iterator[ApiHarness]:
    """The API on each backend, with the cast of ``USERS`` (not signed in yet)."""
    with make_api(database, fast_settings(tmp_path), test_inventory) as harness:
        yield harness


@pytest.fixture
def sqlite_api(tmp_path: Path, test_inventory: Inventory) -> Iterator[ApiHarness]:
    """The API on SQLite only, for tests about the HTTP layer rather than the backend."""
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    db.migrate()
    try:
        with make_api(db, fast_settings(tmp_path), test_inventory) as harness:
            yield harness
    finally:
        db.dispose()


# ---------------------------------------------------------------------------- the lab


@pytest.fixture
def lab_api(lab: Any, settings: Any, tmp_path: Path) -> Iterator[ApiHarness]:
    """The API on the lab's own inventory (read from its file, as ``serve -i`` does)."""
    from fastapi.testclient import TestClient

    from api import create_app
    from orchestrator.storage.models import Role

    svc = fast_settings(
        tmp_path, inventory=[str(lab.inventory_path)],
        user_known_hosts=settings.user_known_hosts, connect_timeout=10.0,
    )
    db = Database(f"sqlite:///{tmp_path / 'lab.db'}")
    app = create_app(svc, database=db)
    try:
        with TestClient(app) as client:
            harness = ApiHarness(client=client, db=db, settings=svc)
            harness.add_user("admin", Role.ADMIN)
            yield harness
    finally:
        db.dispose()
