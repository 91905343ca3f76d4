"""Agent Protocol runs and their stream events (durable; any process serves them).

The ``runs`` table is also the work queue: a worker claims a ``pending`` run (or a
``running`` one whose lease expired) with ``FOR UPDATE SKIP LOCKED``; see
:mod:`core.runs.store`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at


class Run(Base):
    """One run: a turn of a thread, queued, claimed by a worker, finished."""

    __tablename__ = "runs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    thread_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False
    )
    # Who created the run: the worker runs the turn as this user.
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    assistant_id: Mapped[str] = mapped_column(String(100), nullable=False)
    # The version a worker started the run with (revision 0011); NULL before it starts.
    assistant_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    multitask_strategy: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default="reject"
    )
    kwargs: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    stateless: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    # The thread's checkpoint when the run first started (rollback forks from it).
    checkpoint_id: Mapped[str | None] = mapped_column(Text(), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    worker: Mapped[str | None] = mapped_column(Text(), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A pending run is not claimed before this (a thread whose turn lock was busy).
    available_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # Set by a cancel: 'interrupt' or 'rollback' (the worker holding the run acts on it).
    cancel: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_runs_thread_id_created_at", "thread_id", "created_at"),
        # The queue: only unfinished runs are scanned by workers.
        Index(
            "ix_runs_active",
            "created_at",
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )


class RunEvent(Base):
    """One stream event of a run; ``seq`` is its SSE id (``Last-Event-ID`` resumes after it)."""

    __tablename__ = "run_events"

    run_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event: Mapped[str] = mapped_column(String(50), nullable=False)
    data: Mapped[Any] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = created_at()
