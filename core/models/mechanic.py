"""Schema changes planned and applied by the mechanic (one row per change)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, DateTime, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at, uuid_pk

CHANGE_STATUSES = ("planned", "applied", "failed", "rolled_back")


class MechanicChange(Base):
    """A spec, its plan (files, SQL, lint, dry run) and where it stands.

    ``before``/``after`` hold the entity definition on either side of the change, so a
    rollback can restore the registry without re-reading git history.
    """

    __tablename__ = "mechanic_changes"

    id: Mapped[uuid.UUID] = uuid_pk()
    action: Mapped[str] = mapped_column(String(30), nullable=False)
    entity: Mapped[str] = mapped_column(String(63), nullable=False)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    instruction: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(
        String(20), nullable=False, server_default=text("'planned'")
    )
    plan: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    revision: Mapped[str | None] = mapped_column(String(64))
    down_revision: Mapped[str | None] = mapped_column(String(64))
    git_commit: Mapped[str | None] = mapped_column(String(64))
    # The revert of git_commit, once rolled back (revision 0012).
    rollback_commit: Mapped[str | None] = mapped_column(String(64))
    backup_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(
            "status IN ('planned', 'applied', 'failed', 'rolled_back')", name="status_known"
        ),
        Index("ix_mechanic_changes_created_at", "created_at"),
        Index("ix_mechanic_changes_entity", "entity"),
    )
