"""``agentry index --reembed``: move the index to another embedding model or vector type
(AGENTRY_VECTOR_TYPE, core/memory/storage.py) without downtime.

1. **begin** — record the target in ``search_embedding_space.next_*`` and (re)create
   the staging column ``embedding_next <type>(<new dims>)`` (metadata-only DDL).
2. **fill** — embed every row's content with the new model into ``embedding_next``,
   in batches (progress bar); when only the type changes, cast the stored vectors
   instead (no model). Searches keep using ``embedding``, the old vectors.
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
from core.memory.storage import check_supported, column_type
from core.models.search import HNSW_INDEX_NAME

NEXT_INDEX_NAME = "ix_search_index_embedding_next_hnsw"
PENDING_INDEX_NAME = "ix_search_index_pending"

RESET_STAGING_SQL = [
    f"DROP INDEX IF EXISTS {NEXT_INDEX_NAME}",
    "ALTER TABLE search_index DROP COLUMN IF EXISTS embedding_next",
    "ALTER TABLE search_index ADD COLUMN embedding_next {kind}({dims})",
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
# Type moves: rows still waiting for their first vector stay for the embedding worker.
CAST_NEXT_SQL = (
    "UPDATE search_index SET embedding_next = CAST(embedding AS {kind}), "
    "embedding_next_model = embedding_model WHERE id IN (SELECT id FROM search_index "
    "WHERE embedding_next IS NULL AND embedding IS NOT NULL ORDER BY id LIMIT :limit "
    "FOR UPDATE SKIP LOCKED)"
)
COUNT_CAST_PENDING_SQL = text(
    "SELECT count(*) FROM search_index WHERE embedding_next IS NULL AND embedding IS NOT NULL"
)
STORED_MODELS_SQL = text(
    "SELECT DISTINCT embedding_model FROM search_index WHERE embedding IS NOT NULL LIMIT 2"
)
CAST_BATCH = 20_000  # rows per transaction when casting (no model in the loop)
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


def type_only(engine: Engine, embedder: Embedder) -> bool:
    """Whether the index already holds ``embedder``'s vectors (then only the type moves)."""
    with engine.begin() as conn:
        space = current_space(conn)
        if space is None:  # never checked at start: the rows say which model wrote them
            models = set(conn.execute(STORED_MODELS_SQL).scalars())
            return models == {embedder.model} and column_dims(conn) == embedder.dims
    return space.model == embedder.model and space.dims == embedder.dims


def begin(engine: Engine, embedder: Embedder, kind: str = "vector") -> int:
    """Prepare the staging column (type ``kind``) for ``embedder``; returns rows left.

    Raises:
        ConfigError: the index already uses this model and this vector type.
    """
    cast = type_only(engine, embedder)
    with engine.begin() as conn:
        space = current_space(conn)
        if cast and column_type(conn) == kind:
            raise ConfigError(
                f"the search index already holds {embedder.model} vectors ({embedder.dims} "
                f"dims) stored as {kind}: nothing to re-embed"
            )
        if cast:
            check_supported(conn, kind)
        resuming = (
            space is not None
            and space.next_model == embedder.model
            and column_dims(conn, "embedding_next") == embedder.dims
            and column_type(conn, "embedding_next") == kind
        )
        if not resuming:
            for stmt in RESET_STAGING_SQL:
                conn.execute(text(stmt.format(dims=int(embedder.dims), kind=kind)))
        if space is None:
            conn.execute(
                text("INSERT INTO search_embedding_space (id, model, dims) VALUES (1, '', 0)")
            )
        conn.execute(MARK_NEXT_SQL, {"model": embedder.model, "dims": embedder.dims})
        left = COUNT_CAST_PENDING_SQL if cast else COUNT_NEXT_PENDING_SQL
        return int(conn.execute(left).scalar_one())


def fill_batch(
    conn: Connection, embedder: Embedder, *, limit: int, cast_to: str | None = None
) -> int:
    """Embed one batch of rows into the staging column; returns how many.

    With ``cast_to`` (a type move), the stored vectors are cast to it instead.
    """
    if cast_to is not None:
        sql = text(CAST_NEXT_SQL.format(kind=cast_to if cast_to == "halfvec" else "vector"))
        return int(conn.execute(sql, {"limit": limit}).rowcount)
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


def switch(
    engine: Engine, embedder: Embedder, *, batch_size: int = 256, cast_to: str | None = None
) -> None:
    """Embed (or cast) the stragglers and swap the new vectors in, atomically."""
    with engine.begin() as conn:
        conn.execute(text(LOCK_WRITERS_SQL))
        while fill_batch(conn, embedder, limit=batch_size, cast_to=cast_to):
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
    """Re-embed the whole index with ``embedder`` (the newly configured model), stored
    as AGENTRY_VECTOR_TYPE; when only the type changed, the vectors are cast, not embedded.

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
    kind = settings.vector_type
    cast_to = kind if type_only(engine, embedder) else None
    total = begin(engine, embedder, kind)
    phase, limit = ("convert", CAST_BATCH) if cast_to else ("embed", batch_size)
    done = 0
    while True:
        with engine.begin() as conn:
            n = fill_batch(conn, embedder, limit=limit, cast_to=cast_to)
        if n == 0:
            break
        done += n
        if progress:
            progress(phase, done, max(total, done))
    build_index(
        conninfo,
        settings,
        column="embedding_next",
        name=NEXT_INDEX_NAME,
        concurrently=True,
        progress=(lambda d, t: progress("index", d, t)) if progress else None,
    )
    switch(engine, embedder, batch_size=limit, cast_to=cast_to)
    return done
