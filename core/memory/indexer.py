"""Writing to the search index: the one interface every searchable thing uses.

Messages (runtime) and mechanic-made entities call :func:`index_document` when
they are written and :func:`remove_document` when they are deleted, inside the
caller's transaction.

Writes are cheap by design: the chunks are inserted with their text (so they are
keyword-searchable at once) and ``embedding IS NULL``; those rows are the queue
that :func:`embed_pending` drains in batches — the server's background worker
(core/memory/worker.py) a moment later, ``agentry index`` for backlogs. Pass an
``embedder`` to embed synchronously instead (bulk tools, benchmarks).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert

from config import Settings, get_settings
from core.errors import EmbeddingMismatchError
from core.memory.chunking import chunk_text
from core.memory.embeddings import Embedder
from core.memory.space import active_model_locked
from core.models import SearchIndex

# SKIP LOCKED lets several server processes drain the queue without waiting on each other.
PENDING_SQL = text(
    "SELECT id, content FROM search_index WHERE embedding IS NULL "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
HAS_PENDING_SQL = text("SELECT EXISTS (SELECT 1 FROM search_index WHERE embedding IS NULL)")
SET_VECTOR_SQL = text(
    "UPDATE search_index SET embedding = CAST(:vec AS vector), embedding_model = :model "
    "WHERE id = :id"
)


def vector_literal(vec: Any) -> str:
    """pgvector's text form of a vector (``[0.1,0.2,...]``)."""
    return "[" + ",".join(f"{float(x):.7g}" for x in vec) + "]"


def index_document(
    conn: Connection,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    text: str,
    user_id: uuid.UUID | None,
    metadata: dict[str, Any] | None = None,
    created_at: datetime | None = None,
    embedder: Embedder | None = None,
    settings: Settings | None = None,
) -> int:
    """Index (or re-index) one document; re-indexing replaces, never duplicates.

    Args:
        conn: a connection in the caller's transaction.
        entity_type: ``message`` or an entity type name.
        entity_id: the row's id.
        text: the searchable text; chunked by AGENTRY_CHUNK_SIZE / AGENTRY_CHUNK_OVERLAP.
        user_id: the owner; searches are scoped to it (None: visible to admins only).
        metadata: filterable attributes (conversation_id, role, field, ...).
        created_at: when the content was written (for since/until); default now.
        embedder: embed now, in this call; default None leaves the vectors to the
            embedding worker (keyword search works immediately either way).
        settings: chunking settings; default the process settings.

    Returns:
        The number of index rows (chunks) the document has.
    """
    settings = settings or get_settings()
    chunks = chunk_text(text, size=settings.chunk_size, overlap=settings.chunk_overlap)
    meta = metadata or {}
    existing = conn.execute(
        select(SearchIndex.content)
        .where(SearchIndex.entity_type == entity_type, SearchIndex.entity_id == entity_id)
        .order_by(SearchIndex.chunk)
    ).scalars()
    if chunks and list(existing) == chunks:
        # Same text: keep the vectors, refresh owner and filters only.
        conn.execute(
            update(SearchIndex)
            .where(SearchIndex.entity_type == entity_type, SearchIndex.entity_id == entity_id)
            .values({SearchIndex.user_id: user_id, SearchIndex.metadata_: meta})
        )
        return len(chunks)
    remove_document(conn, entity_type=entity_type, entity_id=entity_id)
    if not chunks:
        return 0
    vectors = embedder.embed(chunks) if embedder is not None else None
    rows = []
    for i, chunk in enumerate(chunks):
        row: dict[str, Any] = {
            "entity_type": entity_type,
            "entity_id": entity_id,
            "chunk": i,
            "content": chunk,
            "user_id": user_id,
            "metadata": meta,  # the column's key (the ORM attribute is metadata_)
        }
        if created_at is not None:
            row["created_at"] = created_at
        if vectors is not None and embedder is not None:
            row["embedding"] = vectors[i]
            row["embedding_model"] = embedder.model
        rows.append(row)
    conn.execute(insert(SearchIndex), rows)
    return len(chunks)


def remove_document(conn: Connection, *, entity_type: str, entity_id: uuid.UUID) -> None:
    """Remove a document from the index (deleted or soft-deleted content)."""
    conn.execute(
        delete(SearchIndex).where(
            SearchIndex.entity_type == entity_type, SearchIndex.entity_id == entity_id
        )
    )


def has_pending(conn: Connection) -> bool:
    """Whether any index row still waits for its vector."""
    return bool(conn.execute(HAS_PENDING_SQL).scalar())


def embed_pending(conn: Connection, embedder: Embedder, *, limit: int = 256) -> int:
    """Embed up to ``limit`` rows that have no vector yet, in the caller's transaction.

    Args:
        conn: a connection in a transaction (rows are locked until it ends).
        embedder: must be the index's active model.
        limit: batch size.

    Returns:
        The number of rows embedded (0: nothing pending, or all locked by others).

    Raises:
        EmbeddingMismatchError: the index has switched to another model.
    """
    active = active_model_locked(conn)
    if active is not None and active != embedder.model:
        raise EmbeddingMismatchError(
            f"the search index now holds {active} vectors; this process embeds with "
            f"{embedder.model}: restart it with the new AGENTRY_EMBEDDING_MODEL"
        )
    rows = conn.execute(PENDING_SQL, {"limit": limit}).all()
    if not rows:
        return 0
    vectors = embedder.embed([r.content for r in rows])
    conn.execute(
        SET_VECTOR_SQL,
        [
            {"id": r.id, "vec": vector_literal(v), "model": embedder.model}
            for r, v in zip(rows, vectors, strict=True)
        ],
    )
    return len(rows)
