"""vector memory: re-embedding staging, embedding space, filter indexes, delete triggers

Revision ID: 0003
Revises: 0002

- search_index.embedding_next / embedding_next_model: where `agentry index --reembed`
  writes the next model's vectors while searches keep using `embedding`.
- search_embedding_space: the model and dimensions the index holds (one row).
- indexes for filtered search (created_at, metadata GIN) and for the embedding queue
  (partial index on rows whose embedding is still NULL).
- triggers: a deleted message, or a soft-deleted conversation's messages, leave the
  index in the same transaction (cascades included).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE_DELETED_FUNCTION = """
CREATE FUNCTION search_index_forget_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM search_index WHERE entity_type = 'message' AND entity_id = OLD.id;
    RETURN OLD;
END;
$$
"""
MESSAGE_DELETED_TRIGGER = """
CREATE TRIGGER search_index_forget_message AFTER DELETE ON messages
FOR EACH ROW EXECUTE FUNCTION search_index_forget_message()
"""
CONVERSATION_DELETED_FUNCTION = """
CREATE FUNCTION search_index_forget_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM search_index
    WHERE entity_type = 'message'
      AND entity_id IN (SELECT id FROM messages WHERE conversation_id = NEW.id);
    RETURN NEW;
END;
$$
"""
CONVERSATION_DELETED_TRIGGER = """
CREATE TRIGGER search_index_forget_conversation AFTER UPDATE OF deleted_at ON conversations
FOR EACH ROW WHEN (NEW.deleted_at IS NOT NULL AND OLD.deleted_at IS NULL)
EXECUTE FUNCTION search_index_forget_conversation()
"""


def upgrade() -> None:
    op.add_column("search_index", sa.Column("embedding_next", Vector(), nullable=True))
    op.add_column(
        "search_index", sa.Column("embedding_next_model", sa.String(length=200), nullable=True)
    )
    op.create_index("ix_search_index_created_at", "search_index", ["created_at"], unique=False)
    op.create_index(
        "ix_search_index_metadata",
        "search_index",
        ["metadata"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"metadata": "jsonb_path_ops"},
    )
    op.create_index(
        "ix_search_index_pending",
        "search_index",
        ["id"],
        unique=False,
        postgresql_where=sa.text("embedding IS NULL"),
    )
    op.create_table(
        "search_embedding_space",
        sa.Column("id", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("dims", sa.Integer(), nullable=False),
        sa.Column("next_model", sa.String(length=200), nullable=True),
        sa.Column("next_dims", sa.Integer(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("id = 1", name=op.f("ck_search_embedding_space_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_embedding_space")),
    )
    op.execute(MESSAGE_DELETED_FUNCTION)
    op.execute(MESSAGE_DELETED_TRIGGER)
    op.execute(CONVERSATION_DELETED_FUNCTION)
    op.execute(CONVERSATION_DELETED_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS search_index_forget_conversation ON conversations")
    op.execute("DROP FUNCTION IF EXISTS search_index_forget_conversation()")
    op.execute("DROP TRIGGER IF EXISTS search_index_forget_message ON messages")
    op.execute("DROP FUNCTION IF EXISTS search_index_forget_message()")
    op.drop_table("search_embedding_space")
    op.drop_index("ix_search_index_pending", table_name="search_index")
    op.drop_index("ix_search_index_metadata", table_name="search_index")
    op.drop_index("ix_search_index_created_at", table_name="search_index")
    op.drop_column("search_index", "embedding_next_model")
    op.drop_column("search_index", "embedding_next")
