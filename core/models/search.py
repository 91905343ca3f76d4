"""The search index: one row per chunk of anything searchable."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_at, updated_at

HNSW_INDEX_NAME = "ix_search_index_embedding_hnsw"
TEXT_SEARCH_CONFIG = "english"


class SearchIndex(Base):
    __tablename__ = "search_index"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(63), nullable=False)
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    chunk: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Dimensions are fixed by the migration from AGENTRY_EMBEDDING_DIMS.
    embedding: Mapped[Any] = mapped_column(Vector(), nullable=True)
    embedding_model: Mapped[str | None] = mapped_column(String(200))
    # Staging for `agentry index --reembed`: filled with the new model's vectors while
    # searches keep using `embedding`, then swapped in by renaming (core/memory/reembed.py).
    embedding_next: Mapped[Any] = mapped_column(Vector(), nullable=True)
    embedding_next_model: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE")
    )
    tsv: Mapped[Any] = mapped_column(
        TSVECTOR, Computed(f"to_tsvector('{TEXT_SEARCH_CONFIG}', content)", persisted=True)
    )
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (
        # Re-indexing upserts on this key, so it never duplicates.
        Index(
            "uq_search_index_entity_chunk",
            "entity_type",
            "entity_id",
            "chunk",
            unique=True,
        ),
        Index("ix_search_index_user_id", "user_id"),
        Index("ix_search_index_created_at", "created_at"),
        # Metadata filters are JSON containment (@>), which jsonb_path_ops serves.
        Index(
            "ix_search_index_metadata",
            "metadata",
            postgresql_using="gin",
            postgresql_ops={"metadata": "jsonb_path_ops"},
        ),
        # Rows still waiting for their vector: the embedding worker's queue.
        Index("ix_search_index_pending", "id", postgresql_where=text("embedding IS NULL")),
        Index("ix_search_index_tsv", "tsv", postgresql_using="gin"),
        Index(
            HNSW_INDEX_NAME,
            "embedding",
            postgresql_using="hnsw",
            # Descriptive only: migration 0001 and every rebuild (core/memory/bulk.py)
            # build with AGENTRY_HNSW_M / AGENTRY_HNSW_EF_CONSTRUCTION (24 / 128).
            postgresql_with={"m": 24, "ef_construction": 128},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )


class SearchEmbeddingSpace(Base):
    """The one embedding space the index is in: model and dimensions (a single row).

    Written when the index first gets vectors and switched atomically by re-embedding;
    servers compare it with their configuration at start.
    """

    __tablename__ = "search_embedding_space"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    dims: Mapped[int] = mapped_column(Integer, nullable=False)
    # Set while `agentry index --reembed` builds the next space.
    next_model: Mapped[str | None] = mapped_column(String(200))
    next_dims: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = updated_at()

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)
