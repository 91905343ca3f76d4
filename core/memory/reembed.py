"""``agentry index --reembed``: move the index to another embedding model without downtime.

1. **begin** — record the target in ``search_embedding_space.next_*`` and (re)create
   the staging column ``embedding_next vector(<new dims>)`` (metadata-only DDL).
2. **fill** — embed every row's content with the new model into ``embedding_next``,
   in batches (progress bar). Searches keep using ``embedding``, the old vectors.
3. **index** — build the new HNSW index on ``embedding_next`` CONCURRENTLY.
4. **switch** — one short transaction: lock out writers (readers go on), embed the
   rows written meanwhile, then swap by renaming columns and indexes (no rewrite)
   and record the new model. Old-model workers notice the switch and stop.

An interrupted re-embed resumes at step 2 when run again with the same target.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, text

from config import Settings
from core.errors import ConfigError
from core.memory.bulk import build_index
from core.memory.embeddings import Embedder
from core.memory.indexer import vector_literal
from core.memory.space import column_dims, current_space
from core.models.search import HNSW_INDEX_NAME

NEXT_INDEX_NAME = "ix_search_index_embedding_next_hnsw"
PENDING_INDEX_NAME = "ix_search_index_pending"

RESET_STAGING_SQL = [
    f"DROP INDEX IF EXISTS {NEXT_INDEX_NAME}",
    "ALTER TABLE search_index DROP COLUMN IF EXISTS embedding_next",
    "ALTER TABLE search_index ADD COLUMN embedding_next vector({dims})",
    "UPDATE search_index SET embedding_next_model = NULL WHERE embedding_next_model IS NOT NULL",
]
MARK_NEXT_SQL = text(
    "UPDATE search_embedding_space SET next_model = :model, next_dims = :dims, updated_at = now()"
)
NEXT_PENDING_SQL = text(
    "SELECT id, content FROM search_index WHERE embedding_next IS NULL "
    "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED"
)
COUNT_NEXT_PENDING_SQL = text("SELECT count(*) FROM search_index WHERE embedding_next IS NULL")
SET_NEXT_SQL = text(
    "UPDATE search_index SET embedding_next = CAST(:vec AS vector), embedding_next_model = :model "
    "WHERE id = :id"
)
# Writers wait during the switch; readers (searches) keep going until the renames.
LOCK_WRITERS_SQL = "LOCK TABLE search_index IN SHARE ROW EXCLUSIVE MODE"
SWITCH_SQL = [
    f"DROP INDEX IF EXISTS {HNSW_INDEX_NAME}",
    "ALTER TABLE search_index DROP COLUMN embedding",
    "ALTER TABLE search_index RENAME COLUMN embedding_next TO embedding",
    "ALTER TABLE search_index DROP COLUMN embedding_model",
    "ALTER TABLE search_index RENAME COLUMN embedding_next_model TO embedding_model",
    f"ALTER INDEX {NEXT_INDEX_NAME} RENAME TO {HNSW_INDEX_NAME}",
    "ALTER TABLE search_index ADD COLUMN embedding_next vector",
    "ALTER TABLE search_index ADD COLUMN embedding_next_model varchar(200)",
    # The queue's partial index went with the old column.
    f"CREATE INDEX {PENDING_INDEX_NAME} ON search_index (id) WHERE embedding IS NULL",
]
FINISH_SPACE_SQL = text(
    "UPDATE search_embedding_space SET model = :model, dims = :dims, next_model = NULL, "
    "next_dims = NULL, updated_at = now()"
)

Progress = Callable[[str, int, int], None]


def begin(engine: Engine, embedder: Embedder) -> int:
    """Prepare the staging column for ``embedder``; returns rows left to embed.

    Raises:
        ConfigError: the index already uses this model.
    """
    with engine.begin() as conn:
        space = current_space(conn)
        if space is not None and space.model == embedder.model and space.dims == embedder.dims:
            raise ConfigError(
                f"the search index already holds {embedder.model} vectors ({embedder.dims} "
                "dims): nothing to re-embed"
            )
        resuming = (
            space is not None
            and space.next_model == embedder.model
            and column_dims(conn, "embedding_next") == embedder.dims
        )
        if not resuming:
            for stmt in RESET_STAGING_SQL:
                conn.execute(text(stmt.format(dims=int(embedder.dims))))
        if space is None:
            conn.execute(
                text("INSERT INTO search_embedding_space (id, model, dims) VALUES (1, '', 0)")
            )
        conn.execute(MARK_NEXT_SQL, {"model": embedder.model, "dims": embedder.dims})
        return int(conn.execute(COUNT_NEXT_PENDING_SQL).scalar_one())


def fill_batch(conn: Connection, embedder: Embedder, *, limit: int) -> int:
    """Embed one batch of rows into the staging column; returns how many."""
    rows = conn.execute(NEXT_PENDING_SQL, {"limit": limit}).all()
    if not rows:
        return 0
    vectors = embedder.embed([r.content for r in rows])
    conn.execute(
        SET_NEXT_SQL,
        [
            {"id": r.id, "vec": vector_literal(v), "model": embedder.model}
            for r, v in zip(rows, vectors, strict=True)
        ],
    )
    return len(rows)


def switch(engine: Engine, embedder: Embedder, *, batch_size: int = 256) -> None:
    """Embed the stragglers and swap the new vectors in, atomically."""
    with engine.begin() as conn:
        conn.execute(text(LOCK_WRITERS_SQL))
        while fill_batch(conn, embedder, limit=batch_size):
            pass
        for stmt in SWITCH_SQL:
            conn.execute(text(stmt))
        conn.execute(FINISH_SPACE_SQL, {"model": embedder.model, "dims": embedder.dims})


def reembed(
    engine: Engine,
    conninfo: str,
    embedder: Embedder,
    settings: Settings,
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> int:
    """Re-embed the whole index with ``embedder`` (the newly configured model).

    Args:
        engine: the database.
        conninfo: its libpq URI (the concurrent index build needs autocommit).
        embedder: the new model.
        settings: HNSW build parameters and resources.
        batch_size: rows per transaction.
        progress: progress(phase, done, total).

    Returns:
        The number of rows embedded.
    """
    total = begin(engine, embedder)
    done = 0
    while True:
        with engine.begin() as conn:
            n = fill_batch(conn, embedder, limit=batch_size)
        if n == 0:
            break
        done += n
        if progress:
            progress("embed", done, max(total, done))
    if progress:
        progress("index", 0, 1)
    build_index(
        conninfo, settings, column="embedding_next", name=NEXT_INDEX_NAME, concurrently=True
    )
    if progress:
        progress("index", 1, 1)
    switch(engine, embedder, batch_size=batch_size)
    return done
