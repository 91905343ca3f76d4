"""runs: durable Agent Protocol runs (also the work queue) and their stream events

Revision ID: 0006
Revises: 0005

``runs`` holds each run's record, its queue state (status, lease, attempt) and its
result; ``run_events`` its stream events in order (``seq`` is the SSE id).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = True, default: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("thread_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("assistant_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column(
            "multitask_strategy", sa.String(length=20), server_default="reject", nullable=False
        ),
        sa.Column("kwargs", jsonb, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("metadata", jsonb, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("stateless", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("checkpoint_id", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker", sa.Text(), nullable=True),
        _ts("lease_expires_at"),
        _ts("available_at", nullable=False, default=True),
        sa.Column("cancel", sa.String(length=20), nullable=True),
        sa.Column("error", jsonb, nullable=True),
        sa.Column("output", jsonb, nullable=True),
        _ts("created_at", nullable=False, default=True),
        _ts("updated_at", nullable=False, default=True),
        _ts("started_at"),
        _ts("ended_at"),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["conversations.id"],
            name=op.f("fk_runs_thread_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_runs_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_thread_id_created_at", "runs", ["thread_id", "created_at"])
    op.create_index(
        "ix_runs_active",
        "runs",
        ["created_at"],
        postgresql_where=sa.text("status IN ('pending', 'running')"),
    )
    op.create_table(
        "run_events",
        sa.Column("run_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("event", sa.String(length=50), nullable=False),
        sa.Column("data", jsonb, nullable=False),
        _ts("created_at", nullable=False, default=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_events_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_run_events")),
    )


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_index("ix_runs_active", table_name="runs")
    op.drop_index("ix_runs_thread_id_created_at", table_name="runs")
    op.drop_table("runs")
