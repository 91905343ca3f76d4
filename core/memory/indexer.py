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

import json
import uuid
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg.vector import VectorBinaryDumper
from psycopg.types import TypeInfo
from sqlalchemy import Connection, text

from config import Settings, get_settings
from core.errors import EmbeddingMismatchError
from core.memory.chunking import chunk_text
from core.memory.embeddings import Embedder
from core.memory.space import active_model_locked

# The write path runs once per message: plain SQL constants cost a fraction of the
# Python time of building ORM expressions per call (measured 2x on short texts).
EXISTING_SQL = text(
    "SELECT content FROM search_index WHERE entity_type = :entity_type "
    "AND entity_id = :entity_id ORDER BY chunk"
)
REFRESH_SQL = text(
    "UPDATE search_index SET user_id = :user_id, metadata = CAST(:metadata AS jsonb), "
    "updated_at = now() "
    "WHERE entity_type = :entity_type AND entity_id = :entity_id"
)
REMOVE_SQL = text(
    "DELETE FROM search_index WHERE entity_type = :entity_type AND entity_id = :entity_id"
)
_INSERT_COLUMNS = "entity_type, entity_id, chunk, content, user_id, metadata, created_at"
_INSERT_VALUES = (
    ":entity_type, :entity_id, :chunk, :content, :user_id, CAST(:metadata AS jsonb), "
    "COALESCE(CAST(:created_at AS timestamptz), now())"
)
INSERT_SQL = text(f"INSERT INTO search_index ({_INSERT_COLUMNS}) VALUES ({_INSERT_VALUES})")
INSERT_EMBEDDED_SQL = text(
    f"INSERT INTO search_index ({_INSERT_COLUMNS}, embedding, embedding_model) "
    f"VALUES ({_INSERT_VALUES}, CAST(:embedding AS vector), :model)"
)
# SKIP LOCKED lets several server processes drain the queue without waiting on each other.
PENDING_SQL = text(
    "SELECT id, content FROM search_index WHERE embedding IS NULL "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
HAS_PENDING_SQL = text("SELECT EXISTS (SELECT 1 FROM search_index WHERE embedding IS NULL)")
ASYNC_COMMIT_SQL = text("SET LOCAL synchronous_commit = off")
COUNT_PENDING_SQL = text("SELECT count(*) FROM search_index WHERE embedding IS NULL")
# Sent through psycopg directly with binary vectors: formatting 384 floats as text
# and parsing them back cost more than the rest of the statement.
SET_VECTOR_SQL = "UPDATE search_index SET embedding = %s, embedding_model = %s WHERE id = %s"
_binary_dumpers: dict[int, type[VectorBinaryDumper]] = {}


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
    key = {"entity_type": entity_type, "entity_id": entity_id}
    meta = json.dumps(metadata or {})
    existing = list(conn.execute(EXISTING_SQL, key).scalars())
    if chunks and existing == chunks:
        # Same text: keep the vectors, refresh owner and filters only.
        conn.execute(REFRESH_SQL, {**key, "user_id": user_id, "metadata": meta})
        return len(chunks)
    if existing:  # new documents (most writes) skip a round trip
        remove_document(conn, entity_type=entity_type, entity_id=entity_id)
    if not chunks:
        return 0
    rows = [
        {
            **key,
            "chunk": i,
            "content": chunk,
            "user_id": user_id,
            "metadata": meta,
            "created_at": created_at,
        }
        for i, chunk in enumerate(chunks)
    ]
    if embedder is None:
        conn.execute(INSERT_SQL, rows)
    else:
        vectors = embedder.embed(chunks)
        for row, vec in zip(rows, vectors, strict=True):
            row.update(embedding=vector_literal(vec), model=embedder.model)
        conn.execute(INSERT_EMBEDDED_SQL, rows)
    return len(chunks)


def remove_document(conn: Connection, *, entity_type: str, entity_id: uuid.UUID) -> None:
    """Remove a document from the index (deleted or soft-deleted content)."""
    conn.execute(REMOVE_SQL, {"entity_type": entity_type, "entity_id": entity_id})


def has_pending(conn: Connection) -> bool:
    """Whether any index row still waits for its vector."""
    return bool(conn.execute(HAS_PENDING_SQL).scalar())


def count_pending(conn: Connection) -> int:
    """How many index rows wait for their vector."""
    return int(conn.execute(COUNT_PENDING_SQL).scalar_one())


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
    # Vectors are derived data: if the server crashes before this commit reaches
    # disk, the rows are still NULL and simply get embedded again. So the commit
    # need not wait for the WAL flush (a batch writes megabytes of HNSW WAL).
    conn.execute(ASYNC_COMMIT_SQL)
    # Short texts repeat ("Thanks!", "OK."): each distinct text is embedded once.
    distinct = list(dict.fromkeys(r.content for r in rows))
    vectors = dict(zip(distinct, embedder.embed(distinct), strict=True))
    with _driver(conn).cursor() as cur:
        cur.adapters.register_dumper(np.ndarray, _vector_dumper(conn))
        cur.executemany(SET_VECTOR_SQL, [(vectors[r.content], embedder.model, r.id) for r in rows])
    return len(rows)


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one (same transaction)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _vector_dumper(conn: Connection) -> type[VectorBinaryDumper]:
    """pgvector's binary dumper bound to this database's ``vector`` type oid."""
    info = conn.connection.info
    if "vector_oid" not in info:
        found = TypeInfo.fetch(_driver(conn), "vector")
        if found is None:  # pragma: no cover - the migrations create the extension
            raise RuntimeError("the vector type is missing: run `agentry db upgrade`")
        info["vector_oid"] = found.oid
    oid = int(info["vector_oid"])
    if oid not in _binary_dumpers:
        _binary_dumpers[oid] = type("VectorDumper", (VectorBinaryDumper,), {"oid": oid})
    return _binary_dumpers[oid]
