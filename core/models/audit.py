"""The append-only audit log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, uuid_pk

AUDIT_STATUSES = ("planned", "succeeded", "failed", "rolled_back")


class AuditLog(Base):
    """One row per significant change. UPDATE and DELETE are refused by a trigger."""

    __tablename__ = "audit_log"

    id: Mapped[uuid.UUID] = uuid_pk()
    action: Mapped[str] = mapped_column(String(50), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_branch: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[datetime] = created_at()

    __table_args__ = (
        CheckConstraint(
            "status IN ('planned', 'succeeded', 'failed', 'rolled_back')", name="status_known"
        ),
        CheckConstraint("char_length(action) > 0", name="action_not_empty"),
        Index("ix_audit_log_action_created_at", "action", "created_at"),
        Index("ix_audit_log_actor", "actor"),
    )
