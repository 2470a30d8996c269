"""The audit log: an append-only hash chain in the database.

Every entry carries the hash of the one before it; its own hash is the sha256 of a canonical
JSON of the entry (id, time, who, from where, what, on which hosts, result, detail) and that
previous hash. Ids are assigned here (last + 1) so they have no gaps, and the chain's last
link is also kept in ``audit_head``. :func:`verify` therefore notices an entry that was
edited (its hash no longer matches), deleted (a gap, or the head pointing past the end) or
inserted (an id out of sequence, a broken link, or entries past the head), and names the
first bad one.

What it cannot notice on its own is someone with write access who rewrites the chain from
some point on *and* the head consistently: keep the head hash (``serverguard audit verify``
prints it) or exported copies elsewhere to anchor the chain against that.

Appends are serialized: on SQLite by taking the write lock up front (``BEGIN IMMEDIATE``, and
an in-process lock so threads queue instead of spinning on ``busy_timeout``); on PostgreSQL by
a transaction-scoped advisory lock, so concurrent appends from several processes never fork
the chain.

Example::

    append(db, AuditEntryCreate(actor="alice", source="127.0.0.1", action="login",
                                result="ok"))
    report = verify_database(db)  # raises AuditChainError naming the first bad entry
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from orchestrator.errors import AuditChainError
from orchestrator.storage.db import PG_AUDIT_LOCK, Database
from orchestrator.storage.models import (
    AuditEntry,
    AuditEntryCreate,
    AuditEntryPublic,
    AuditHead,
)
from orchestrator.storage.types import as_utc, utcnow

GENESIS = "0" * 64  # the prev_hash of the first entry
HASHED_FIELDS = ("id", "ts", "actor", "actor_id", "source", "action", "target", "hosts",
                 "result", "detail", "prev_hash")


def format_ts(ts: datetime) -> str:
    return as_utc(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(fields: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, UTF-8, timestamps in UTC."""
    doc = {name: fields.get(name) for name in HASHED_FIELDS}
    if isinstance(doc["ts"], datetime):
        doc["ts"] = format_ts(doc["ts"])
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def entry_hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


def _fields(entry: AuditEntry | AuditEntryPublic) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in HASHED_FIELDS}


# ---------------------------------------------------------------------------- append


def _storable(value: Any) -> Any:
    """NUL spelled out as ``\\x00`` in every string: PostgreSQL cannot store NUL."""
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


@contextlib.contextmanager
def _chain_lock(db: Database, session: Session) -> Iterator[None]:
    """Hold the right to append for the rest of ``session``'s transaction."""
    if db.is_sqlite:
        with db.write_lock:
            # Take SQLite's write lock before reading the head, not at the first INSERT:
            # otherwise two writers could both read the same head and fork the chain.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield
    else:
        session.connection().execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                                     {"k": PG_AUDIT_LOCK})
        yield


def append(db: Database, entry: AuditEntryCreate, *, ts: datetime | None = None) -> AuditEntry:
    """Append ``entry`` to the chain in its own transaction; returns the stored row."""
    # A JSON round trip now, so what is hashed is exactly what the database hands back.
    data = json.loads(json.dumps(_storable(entry.model_dump()), allow_nan=False))
    with db.session() as session, _chain_lock(db, session):
        head = session.get(AuditHead, 1)
        if head is not None:
            last_id, prev_hash = head.last_id, head.last_hash
        else:
            last = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())).first()
            last_id, prev_hash = (last.id, last.hash) if last else (0, GENESIS)
        fields = {**data, "id": last_id + 1, "ts": as_utc(ts or utcnow()),
                  "prev_hash": prev_hash}
        row = AuditEntry(**fields, hash=entry_hash(fields))
        session.add(row)
        if head is None:
            session.add(AuditHead(id=1, last_id=row.id, last_hash=row.hash))
        else:
            head.last_id, head.last_hash = row.id, row.hash
            session.add(head)
        session.commit()
        return row


# ---------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int
    last_id: int
    head_hash: str  # record this elsewhere to anchor the chain


def verify_entries(
    entries: Iterable[AuditEntry | AuditEntryPublic],
    head: tuple[int, str] | None = None,
    *,
    check_head: bool = True,
) -> VerifyReport:
    """Walk ``entries`` (in id order); raise :class:`AuditChainError` at the first bad one.

    ``head`` is ``(last_id, last_hash)`` from ``audit_head`` (``None``: no head row).
    """
    expected_id, prev_hash, count = 1, GENESIS, 0
    for entry in entries:
        if entry.id > expected_id:
            missing = (f"entry {expected_id} is missing" if entry.id == expected_id + 1
                       else f"entries {expected_id}..{entry.id - 1} are missing")
            raise AuditChainError(expected_id, f"{missing} (deleted): the chain jumps from "
                                  f"entry {expected_id - 1} to entry {entry.id}")
        if entry.id < expected_id:
            raise AuditChainError(entry.id, f"out of sequence after entry {expected_id - 1} "
                                  "(inserted)")
        if entry_hash(_fields(entry)) != entry.hash:
            raise AuditChainError(entry.id, "contents do not match its hash (edited)")
        if entry.prev_hash != prev_hash:
            before = f"entry {entry.id - 1}" if entry.id > 1 else "the start of the chain"
            raise AuditChainError(entry.id, f"does not link to {before} (prev_hash differs: "
                                  "inserted, or an earlier entry was rewritten)")
        expected_id, prev_hash, count = entry.id + 1, entry.hash, count + 1
    last_id = expected_id - 1
    if check_head:
        if head is None:
            if count:
                raise AuditChainError(last_id, "the chain head record is missing (deleted)")
        elif head[0] > last_id:
            raise AuditChainError(last_id + 1, f"entries {last_id + 1}..{head[0]} are missing "
                                  "from the end (deleted)")
        elif head[0] < last_id:
            raise AuditChainError(head[0] + 1, "appended behind the service's back: the chain "
                                  f"head ends at entry {head[0]} (inserted)")
        elif head[1] != prev_hash:
            raise AuditChainError(last_id, "does not match the chain head's hash (rewritten)")
    return VerifyReport(entries=count, last_id=last_id, head_hash=prev_hash)


def iter_entries(db: Database, *, batch: int = 1000) -> Iterator[AuditEntry]:
    """Every entry in id order, read in batches (keyset pagination)."""
    after: int | None = None
    while True:
        with db.session() as session:
            query = select(AuditEntry).order_by(col(AuditEntry.id)).limit(batch)
            if after is not None:
                query = query.where(col(AuditEntry.id) > after)
            rows = list(session.exec(query).all())
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].id


def verify_database(db: Database) -> VerifyReport:
    with db.session() as session:
        head_row = session.get(AuditHead, 1)
        head = (head_row.last_id, head_row.last_hash) if head_row else None
    return verify_entries(iter_entries(db), head)


# ---------------------------------------------------------------------------- export/query


def export_jsonl(db: Database, out: IO[str]) -> int:
    """Write every entry as one JSON line (the fields that are hashed, plus ``hash``)."""
    count = 0
    for entry in iter_entries(db):
        doc = AuditEntryPublic.model_validate(entry).model_dump(mode="json")
        doc["ts"] = format_ts(entry.ts)
        out.write(json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n")
        count += 1
    return count


def read_jsonl(lines: Iterable[str]) -> Iterator[AuditEntryPublic]:
    """Entries from :func:`export_jsonl` output, to verify an exported copy."""
    for line in lines:
        if line.strip():
            yield AuditEntryPublic.model_validate_json(line)


def list_entries(
    session: Session,
    *,
    skip: int = 0,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    result: str | None = None,
    host: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[AuditEntry], int]:
    """A page of entries, newest first, and how many match in total."""
    conditions: list[sa.ColumnElement[bool]] = []
    if actor is not None:
        conditions.append(col(AuditEntry.actor) == actor)
    if action is not None:
        # "run" matches run.create, run.finish...; "run.create" only itself.
        conditions.append(sa.or_(col(AuditEntry.action) == action,
                                 col(AuditEntry.action).startswith(f"{action}.",
                                                                   autoescape=True)))
    if result is not None:
        conditions.append(col(AuditEntry.result) == result)
    if host is not None:
        needle = json.dumps(host)  # hosts is a JSON list: match the quoted name
        conditions.append(sa.cast(col(AuditEntry.hosts), sa.Text).contains(needle,
                                                                           autoescape=True))
    if since is not None:
        conditions.append(col(AuditEntry.ts) >= since)
    if until is not None:
        conditions.append(col(AuditEntry.ts) < until)
    count = session.exec(select(func.count()).select_from(AuditEntry).where(*conditions)).one()
    rows = session.exec(
        select(AuditEntry).where(*conditions).order_by(col(AuditEntry.id).desc())
        .offset(skip).limit(limit)
    ).all()
    return list(rows), count
