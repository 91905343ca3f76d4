"""Stored credentials (provider and tool keys): encrypted values, never returned."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at, uuid_pk

CREDENTIAL_NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,99}$"


class Credential(Base):
    """One credential of a user (``owner_id``) or shared by the admins (``owner_id`` NULL).

    ``ciphertext`` is a Fernet token; ``key_id`` names the key that made it, so a key
    rotation knows which rows still need re-encrypting and which old key reads them.
    """

    __tablename__ = "credentials"

    id: Mapped[uuid.UUID] = uuid_pk()
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    ciphertext: Mapped[str] = mapped_column(Text, nullable=False)
    key_id: Mapped[str] = mapped_column(String(32), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        CheckConstraint(f"name ~ '{CREDENTIAL_NAME_PATTERN}'", name="name_format"),
        # One shared credential per name too: NULL owners are not distinct.
        Index(
            "uq_credentials_owner_id_name",
            "owner_id",
            "name",
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        Index("ix_credentials_key_id", "key_id"),
    )
