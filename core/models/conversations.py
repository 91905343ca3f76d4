"""Conversations, their normalized messages and agent switches."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at, uuid_pk

MESSAGE_ROLES = ("user", "assistant", "system", "tool")


class ConversationStatus(enum.StrEnum):
    active = "active"
    paused = "paused"
    closed = "closed"
    escalated = "escalated"


class Conversation(Base):
    """A session with an agent; its id is also its LangGraph thread id."""

    __tablename__ = "conversations"

    id: Mapped[uuid.UUID] = uuid_pk()
    session_id: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    channel: Mapped[str] = mapped_column(String(50), nullable=False, server_default="api")
    status: Mapped[ConversationStatus] = mapped_column(
        Enum(
            ConversationStatus,
            name="conversation_status",
            values_callable=lambda e: [m.value for m in e],
        ),
        nullable=False,
        server_default=ConversationStatus.active.value,
    )
    current_agent: Mapped[str | None] = mapped_column(String(100))
    context_data: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    messages_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # A turn started and has not finished (crash or failing models): resume from the checkpoint.
    turn_pending: Mapped[bool] = mapped_column(
        Boolean, nullable=False, server_default=text("false")
    )
    # The turn waits for a person: its interrupts (id, value, node, task); [] at a breakpoint.
    pending_interrupts: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    last_activity: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Agent Protocol thread ttl: deleted after this many minutes without activity.
    ttl_minutes: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        CheckConstraint("messages_count >= 0", name="messages_count_nonnegative"),
        CheckConstraint("ttl_minutes IS NULL OR ttl_minutes > 0", name="ttl_minutes_positive"),
        Index(
            "ix_conversations_ttl_last_activity",
            "last_activity",
            postgresql_where=text("ttl_minutes IS NOT NULL AND deleted_at IS NULL"),
        ),
        # The list a user sees: their live conversations, most recent first.
        Index(
            "ix_conversations_user_id_last_activity",
            "user_id",
            "last_activity",
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    agent: Mapped[str | None] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(200))
    token_count: Mapped[int | None] = mapped_column(Integer)
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = created_at()
    # Total order within a conversation: messages of one step share created_at.
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), nullable=False)
    # LangGraph message id: replaying a checkpoint never stores a message twice.
    lc_id: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        Index("ix_messages_conversation_id_seq", "conversation_id", "seq"),
        Index("uq_messages_conversation_id_lc_id", "conversation_id", "lc_id", unique=True),
        CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name="role_known"),
        CheckConstraint("content ~ '\\S'", name="content_not_empty"),
        CheckConstraint("token_count IS NULL OR token_count >= 0", name="token_count_nonnegative"),
        Index("ix_messages_conversation_id_created_at", "conversation_id", "created_at"),
        Index("ix_messages_user_id", "user_id"),
    )


class AgentSwitch(Base):
    __tablename__ = "agent_switches"

    id: Mapped[uuid.UUID] = uuid_pk()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    from_agent: Mapped[str | None] = mapped_column(String(100))
    to_agent: Mapped[str] = mapped_column(String(100), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    switched_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        Index("ix_agent_switches_conversation_id_switched_at", "conversation_id", "switched_at"),
    )
