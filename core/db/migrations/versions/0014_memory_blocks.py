"""memory blocks: named, size-limited texts in the agent's prompt, and their versions

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "memory_blocks",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("agent", sa.String(length=100), server_default="", nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), server_default="", nullable=False),
        sa.Column("char_limit", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.CheckConstraint(
            "char_length(value) <= char_limit", name=op.f("ck_memory_blocks_value_within_limit")
        ),
        sa.CheckConstraint("char_limit > 0", name=op.f("ck_memory_blocks_char_limit_positive")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_memory_blocks_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_blocks")),
    )
    op.create_index(
        "uq_memory_blocks_user_id_agent_label",
        "memory_blocks",
        ["user_id", "agent", "label"],
        unique=True,
    )
    op.create_table(
        "memory_block_versions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("block_id", sa.UUID(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("op", sa.String(length=20), server_default=sa.text("'set'"), nullable=False),
        _ts("created_at"),
        sa.ForeignKeyConstraint(
            ["block_id"],
            ["memory_blocks.id"],
            name=op.f("fk_memory_block_versions_block_id_memory_blocks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memory_block_versions")),
    )
    op.create_index(
        "uq_memory_block_versions_block_id_version",
        "memory_block_versions",
        ["block_id", "version"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_table("memory_block_versions")
    op.drop_table("memory_blocks")
