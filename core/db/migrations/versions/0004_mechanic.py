"""mechanic: mechanic_changes (plans and their status), entity_types.indexes and description

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 18:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("entity_types", sa.Column("description", sa.Text(), nullable=True))
    op.add_column(
        "entity_types",
        sa.Column(
            "indexes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.create_table(
        "mechanic_changes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("entity", sa.String(length=63), nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=True),
        sa.Column(
            "status", sa.String(length=20), server_default=sa.text("'planned'"), nullable=False
        ),
        sa.Column(
            "plan",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("revision", sa.String(length=64), nullable=True),
        sa.Column("down_revision", sa.String(length=64), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("backup_path", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('planned', 'applied', 'failed', 'rolled_back')",
            name=op.f("ck_mechanic_changes_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mechanic_changes")),
    )
    op.create_index("ix_mechanic_changes_created_at", "mechanic_changes", ["created_at"])
    op.create_index("ix_mechanic_changes_entity", "mechanic_changes", ["entity"])


def downgrade() -> None:
    op.drop_index("ix_mechanic_changes_entity", table_name="mechanic_changes")
    op.drop_index("ix_mechanic_changes_created_at", table_name="mechanic_changes")
    op.drop_table("mechanic_changes")
    op.drop_column("entity_types", "indexes")
    op.drop_column("entity_types", "description")
