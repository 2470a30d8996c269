"""Storage and the audit chain on SQLite and PostgreSQL: migrations, appends under
concurrency, and tampering (edit, delete, insert) found and named by ``audit verify``."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from orchestrator import audit
from orchestrator.cli import audit_cmd
from orchestrator.errors import AuditChainError, ConfigError, ConflictError, StorageError
from orchestrator.storage import accounts
from orchestrator.storage.db import Database
from orchestrator.storage.models import AuditEntryCreate, GrantCreate, Role, UserCreate


def entry(n: int, **kw: object) -> AuditEntryCreate:
    fields: dict[str, object] = {"actor": "alice", "source": "127.0.0.1",
                                 "action": "run.create", "target": f"run:{n}",
                                 "hosts": ["web1", "wéb2"], "result": "ok",
                                 "detail": {"n": n, "command": "echo 'ü' \"x\"", "f": 1.5}}
    fields.update(kw)
    return AuditEntryCreate.model_validate(fields)


def fill(db: Database, count: int) -> None:
    for n in range(1, count + 1):
        audit.append(db, entry(n))


def sql(db: Database, statement: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_migrations_create_every_table_and_are_idempotent(database: Database) -> None:
    tables = set(sa.inspect(database.engine).get_table_names())
    assert {"users", "grants", "api_tokens", "runs", "run_host_results", "run_events",
            "audit_log", "audit_head", "alembic_version"} <= tables
    database.migrate()  # a second start changes nothing


def test_users_and_grants_round_trip(database: Database) -> None:
    with database.session() as session:
        user = accounts.create_user(session, data=UserCreate(
            username="alice", role=Role.OPERATOR, password="x" * 12), password_hash="h")
        assert user.id is not None
        accounts.create_grant(session, data=GrantCreate(user_id=user.id, group="web"))
        session.commit()
        with pytest.raises(ConflictError, match="already has a grant"):
            accounts.create_grant(session, data=GrantCreate(user_id=user.id, group="web"))
    with database.session() as session, pytest.raises(ConflictError, match="already exists"):
        accounts.create_user(session, data=UserCreate(
            username="alice", password="y" * 12), password_hash="h")
    with database.session() as session:
        found = accounts.get_user_by_name(session, username="alice")
        assert found is not None and found.role == "operator"
        assert found.created_at.tzinfo is not None  # always aware UTC, on both backends
        assert accounts.groups_of(session, user_id=found.id or 0) == ["web"]


def test_chain_verifies_and_export_round_trips(database: Database) -> None:
    fill(database, 5)
    report = audit.verify_database(database)
    assert (report.entries, report.last_id) == (5, 5)
    out = io.StringIO()
    assert audit.export_jsonl(database, out) == 5
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0])["id"] == 1
    exported = audit.verify_entries(audit.read_jsonl(lines), check_head=False)
    assert exported.head_hash == report.head_hash


def test_edited_entry_is_named(database: Database) -> None:
    fill(database, 6)
    sql(database, "UPDATE audit_log SET result = 'denied' WHERE id = 3")
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 3
    assert "edited" in str(err.value)


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(database: Database) -> None:
    fill(database, 6)
    with database.session() as session:
        row = session.get(audit.AuditEntry, 3)
        assert row is not None
        fields = {name: getattr(row, name) for name in audit.HASHED_FIELDS}
        fields["actor"] = "mallory"
        new_hash = audit.entry_hash(fields)
    sql(database, "UPDATE audit_log SET actor = 'mallory', hash = :h WHERE id = 3", h=new_hash)
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 4
    assert "does not link" in str(err.value)


def test_deleted_entry_is_named(database: Database) -> None:
    fill(database, 6)
    sql(database, "DELETE FROM audit_log WHERE id = 4")
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 4
    assert "missing" in str(err.value)


def test_deleted_tail_is_noticed_through_the_head(database: Database) -> None:
    fill(database, 6)
    sql(database, "DELETE FROM audit_log WHERE id >= 5")
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 5
    # ... and appending more afterwards does not hide it.
    audit.append(database, entry(7))
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 5


def test_inserted_entries_are_named(database: Database) -> None:
    fill(database, 4)
    with database.session() as session:
        last = session.get(audit.AuditEntry, 4)
        assert last is not None
        fields = {**{name: getattr(last, name) for name in audit.HASHED_FIELDS},
                  "id": 5, "prev_hash": last.hash, "actor": "mallory"}
        forged = audit.entry_hash(fields)
    # A well-formed forgery appended after the last entry: the head does not know it.
    sql(database, "INSERT INTO audit_log (id, ts, actor, actor_id, source, action, target, "
        "hosts, result, detail, prev_hash, hash) SELECT 5, ts, 'mallory', actor_id, source, "
        "action, target, hosts, result, detail, :prev, :hash FROM audit_log WHERE id = 4",
        prev=last.hash, hash=forged)
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 5
    assert "inserted" in str(err.value)


def test_inserted_entry_before_the_start_is_named(database: Database) -> None:
    fill(database, 3)
    sql(database, "INSERT INTO audit_log (id, ts, actor, actor_id, source, action, target, "
        "hosts, result, detail, prev_hash, hash) SELECT 0, ts, actor, actor_id, source, "
        "action, target, hosts, result, detail, prev_hash, 'bogus' FROM audit_log WHERE id = 1")
    with pytest.raises(AuditChainError) as err:
        audit.verify_database(database)
    assert err.value.entry_id == 0


def test_concurrent_appends_never_fork_the_chain(database: Database) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for n in range(10):
                audit.append(database, entry(k * 100 + n, actor=f"w{k}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert audit.verify_database(database).entries == 60


def test_concurrent_appends_from_separate_engines(database_url: str) -> None:
    """Two processes' worth of engines (no shared in-process lock) still chain correctly."""
    first, second = Database(database_url), Database(database_url)
    try:
        first.migrate()
        threads = [threading.Thread(target=fill, args=(db, 15)) for db in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert audit.verify_database(first).entries == 30
    finally:
        first.dispose()
        second.dispose()


def test_list_entries_filters(database: Database) -> None:
    audit.append(database, entry(1, actor="alice", hosts=["web1"]))
    audit.append(database, entry(2, actor="bob", action="login", hosts=[], result="denied"))
    audit.append(database, entry(3, actor="bob", action="run.finish", hosts=["db1"]))
    with database.session() as session:
        rows, count = audit.list_entries(session, actor="bob")
        assert count == 2 and [r.id for r in rows] == [3, 2]
        assert audit.list_entries(session, action="run")[1] == 2
        assert audit.list_entries(session, host="db1")[1] == 1
        assert audit.list_entries(session, host="web")[1] == 0  # whole names only
        assert audit.list_entries(session, result="denied")[1] == 1
        rows, count = audit.list_entries(session, skip=1, limit=1)
        assert count == 3 and [r.id for r in rows] == [2]


def test_cli_verify_and_export(database: Database, tmp_path: Path) -> None:
    database_url = database.url.render_as_string(hide_password=False)
    fill(database, 3)
    runner = CliRunner()
    ok = runner.invoke(audit_cmd.app, ["verify", "--database-url", database_url])
    assert ok.exit_code == 0, ok.output
    assert "3 entries" in ok.output
    target = tmp_path / "audit.jsonl"
    exported = runner.invoke(audit_cmd.app, ["export", "--database-url", database_url,
                                             "-o", str(target)])
    assert exported.exit_code == 0, exported.output
    assert len(target.read_text().splitlines()) == 3
    assert runner.invoke(audit_cmd.app, ["verify", "--file", str(target)]).exit_code == 0
    sql(database, "UPDATE audit_log SET hosts = '[]' WHERE id = 2")
    bad = runner.invoke(audit_cmd.app, ["verify", "--database-url", database_url])
    assert bad.exit_code == 1
    assert "audit entry 2" in bad.output


def test_cli_on_a_database_without_the_schema_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(audit_cmd.app, ["verify", "--database-url",
                                                f"sqlite:///{tmp_path / 'empty.db'}"])
    assert result.exit_code == 1
    assert isinstance(result.exception, StorageError)
    assert "no audit log" in str(result.exception)


def test_bad_database_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unsupported backend"):
        Database("mysql://x@y/z")
