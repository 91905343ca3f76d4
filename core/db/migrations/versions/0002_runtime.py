"""runtime: agent specs in the registry, message order and idempotency, model timeouts

Revision ID: 0002
Revises: 0001

- agents.spec: the agent definition (system prompt, model, tools, handoffs) so the
  registry row, not the file, is what the runtime reads.
- messages.seq: a total order inside a conversation (several messages are written
  in one transaction and share created_at); cursor pagination uses it.
- messages.lc_id: the LangGraph message id; unique per conversation, so replaying a
  checkpoint after a crash never stores a message twice.
- conversations.turn_pending: a turn started and did not finish (resume it).
- ai_models.timeout_seconds: per-model timeout before the router falls back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "agents",
        sa.Column(
            "spec",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column(
        "messages",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
    )
    op.add_column("messages", sa.Column("lc_id", sa.String(length=100), nullable=True))
    op.create_index(
        "ix_messages_conversation_id_seq", "messages", ["conversation_id", "seq"], unique=False
    )
    op.create_index(
        "uq_messages_conversation_id_lc_id",
        "messages",
        ["conversation_id", "lc_id"],
        unique=True,
    )
    op.add_column(
        "conversations",
        sa.Column("turn_pending", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("ai_models", sa.Column("timeout_seconds", sa.Float(), nullable=True))
    op.create_check_constraint(
        "ck_ai_models_timeout_positive",
        "ai_models",
        "timeout_seconds IS NULL OR timeout_seconds > 0",
    )


def downgrade() -> None:
    op.drop_constraint("ck_ai_models_timeout_positive", "ai_models", type_="check")
    op.drop_column("ai_models", "timeout_seconds")
    op.drop_column("conversations", "turn_pending")
    op.drop_index("uq_messages_conversation_id_lc_id", table_name="messages")
    op.drop_index("ix_messages_conversation_id_seq", table_name="messages")
    op.drop_column("messages", "lc_id")
    op.drop_column("messages", "seq")
    op.drop_column("agents", "spec")
