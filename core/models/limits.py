"""Rate limits: each user's own numbers, and the token buckets every process shares."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Double, ForeignKey, Integer, Text, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base


class UserLimit(Base):
    """Per-minute limits of one user; NULL: the role's default (settings), 0: unlimited."""

    __tablename__ = "user_limits"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    turns_per_minute: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("requests_per_minute >= 0", name="requests_not_negative"),
        CheckConstraint("turns_per_minute >= 0", name="turns_not_negative"),
    )


class RateBucket(Base):
    """A token bucket (``r:<user>``, ``t:<user>``, ``a:<client address>``).

    UNLOGGED: a bucket is worth a minute of history; after a crash PostgreSQL empties
    the table and every bucket starts full, and no write of it waits for the WAL.
    """

    __tablename__ = "rate_buckets"

    bucket: Mapped[str] = mapped_column(Text, primary_key=True)
    capacity: Mapped[float] = mapped_column(Double, nullable=False)
    tokens: Mapped[float] = mapped_column(Double, nullable=False)
    granted: Mapped[bool] = mapped_column(nullable=False)
    refilled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = ({"prefixes": ["UNLOGGED"]},)
