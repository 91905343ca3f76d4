"""The Agent Protocol store: JSON documents per user, addressed by namespace and key."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at, uuid_pk


class StoreItem(Base):
    """One item of a user's store (``langgraph_sdk`` ``client.store``).

    ``id`` names the item in ``search_index`` (entity_type ``store_item``), so the
    store is searched like every other document.
    """

    __tablename__ = "store_items"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    namespace: Mapped[list[str]] = mapped_column(ARRAY(Text()), nullable=False)
    key: Mapped[str] = mapped_column(String(1024), nullable=False)
    value: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        # One item per (user, namespace, key); the prefix of the index serves
        # namespace-prefix listings too.
        Index("uq_store_items_user_id_namespace_key", "user_id", "namespace", "key", unique=True),
    )
