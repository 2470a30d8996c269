"""playbook runs: their request and outcome, and each host's recap

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:28:16.046750
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "playbook_runs",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("playbook", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("limit", sa.String(length=1000), nullable=False),
        sa.Column("check", sa.Boolean(), nullable=False),
        sa.Column("diff", sa.Boolean(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("skip_tags", sa.JSON(), nullable=False),
        sa.Column("extra_vars", sa.JSON(), nullable=False),
        sa.Column("runner_id", sa.String(length=64), nullable=True),
        sa.Column("strategy", sa.String(length=64), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("run_host_results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recap", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_host_results", schema=None) as batch_op:
        batch_op.drop_column("recap")

    op.drop_table("playbook_runs")
