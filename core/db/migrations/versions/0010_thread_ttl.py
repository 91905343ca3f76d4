"""thread ttl: conversations that delete themselves after a time without activity

Revision ID: 0010
Revises: 0009

``conversations.ttl_minutes`` is the Agent Protocol thread ``ttl`` (strategy
``delete``): a conversation whose last activity is older than that is soft-deleted
by the sweep (the server's, and ``agentry prune``'s). The partial index keeps the
sweep to the conversations that have a ttl.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("ttl_minutes", sa.Float(), nullable=True))
    op.create_check_constraint(
        "ck_conversations_ttl_minutes_positive",
        "conversations",
        "ttl_minutes IS NULL OR ttl_minutes > 0",
    )
    op.create_index(
        "ix_conversations_ttl_last_activity",
        "conversations",
        ["last_activity"],
        postgresql_where=sa.text("ttl_minutes IS NOT NULL AND deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_ttl_last_activity", table_name="conversations")
    op.drop_constraint("ck_conversations_ttl_minutes_positive", "conversations", type_="check")
    op.drop_column("conversations", "ttl_minutes")
