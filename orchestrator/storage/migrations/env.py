"""Alembic environment: always handed a connection by ``Database.migrate``.

To write a new revision: ``python -m orchestrator.storage.revision "what changed"``.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

import orchestrator.storage.models  # noqa: F401  (registers the tables on the metadata)
from orchestrator.storage.types import UTCDateTime

target_metadata = SQLModel.metadata


def render_item(kind: str, obj: Any, _autogen: AutogenContext) -> str | Literal[False]:
    """Migrations use plain SQLAlchemy types, so they never import the models' modules."""
    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("migrations run through orchestrator.storage.db.Database.migrate()")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
