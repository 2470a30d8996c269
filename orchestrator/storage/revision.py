"""Write a new schema migration from the difference between the models and the migrations.

Run after changing ``orchestrator/storage/models.py``, then read and tidy the file it writes::

    python -m orchestrator.storage.revision "add run labels"

It upgrades a scratch SQLite database to the current head, compares it with the models and
writes ``migrations/versions/NNNN_<slug>.py``. Check the result on PostgreSQL too (the API
tests run every migration on both when PostgreSQL is available).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from orchestrator.storage.db import MIGRATIONS, Database


def write_revision(message: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/scratch.db")
        db.migrate()
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        heads = ScriptDirectory.from_config(cfg).get_heads()
        number = len(list(ScriptDirectory.from_config(cfg).walk_revisions())) + 1
        slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")[:40]
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            script = command.revision(
                cfg, message, autogenerate=True, rev_id=f"{number:04d}",
                head=heads[0] if heads else "base",
            )
        db.dispose()
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    final = path.with_name(f"{number:04d}_{slug}.py")
    path.rename(final)
    return final


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m orchestrator.storage.revision 'what changed'")
    print(write_revision(sys.argv[1]))
