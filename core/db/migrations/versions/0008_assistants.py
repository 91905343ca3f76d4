"""assistants: versioned agents made through the Agent Protocol

Revision ID: 0008
Revises: 0007

An assistant is an agent row (``agents.assistant_id`` set) whose definition is
one of its versions in ``assistant_versions``; ``agents.version`` points at the
current one, so the registry fingerprint notices every change.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("assistant_id", sa.UUID(), nullable=True))
    op.create_unique_constraint(op.f("uq_agents_assistant_id"), "agents", ["assistant_id"])
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    op.create_table(
        "assistant_versions",
        sa.Column("assistant_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("config", jsonb, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("context", jsonb, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("metadata", jsonb, server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("spec", jsonb, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("version >= 1", name=op.f("ck_assistant_versions_version_positive")),
        sa.ForeignKeyConstraint(
            ["assistant_id"],
            ["agents.assistant_id"],
            name=op.f("fk_assistant_versions_assistant_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("assistant_id", "version", name=op.f("pk_assistant_versions")),
    )


def downgrade() -> None:
    op.drop_table("assistant_versions")
    op.execute("DELETE FROM agents WHERE assistant_id IS NOT NULL")
    op.drop_constraint(op.f("uq_agents_assistant_id"), "agents", type_="unique")
    op.drop_column("agents", "assistant_id")
