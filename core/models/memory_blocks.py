"""Memory blocks: named, size-limited texts always in an agent's prompt, with their versions."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, uuid_pk


class MemoryBlock(Base):
    """One block of one user; ``agent`` '' is shared by all the user's agents."""

    __tablename__ = "memory_blocks"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    agent: Mapped[str] = mapped_column(String(100), nullable=False, server_default="")
    label: Mapped[str] = mapped_column(String(100), nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    char_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        Index("uq_memory_blocks_user_id_agent_label", "user_id", "agent", "label", unique=True),
        # The last line of defence: every write path checks the limit first.
        CheckConstraint("char_length(value) <= char_limit", name="value_within_limit"),
        CheckConstraint("char_limit > 0", name="char_limit_positive"),
    )


class MemoryBlockVersion(Base):
    """Every value a block has had, with who wrote it."""

    __tablename__ = "memory_block_versions"

    id: Mapped[uuid.UUID] = uuid_pk()
    block_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("memory_blocks.id", ondelete="CASCADE"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    value: Mapped[str] = mapped_column(Text, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    op: Mapped[str] = mapped_column(String(20), nullable=False, server_default=text("'set'"))
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        Index("uq_memory_block_versions_block_id_version", "block_id", "version", unique=True),
    )
