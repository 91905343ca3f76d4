"""The embedding space the index is in (model + dimensions), checked at start.

``search_embedding_space`` holds one row: the model whose vectors are in
``search_index.embedding`` and their dimensions. A process configured for another
model or dimension must not write or query vectors: it would corrupt the index or
compare vectors from different spaces. Re-embedding switches the row atomically.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from config import Settings
from core.errors import EmbeddingMismatchError
from core.memory.storage import column_type

COLUMN_DIMS_SQL = text(
    "SELECT atttypmod FROM pg_attribute "
    "WHERE attrelid = 'search_index'::regclass AND attname = :column AND NOT attisdropped"
)
READ_SPACE_SQL = text("SELECT model, dims, next_model, next_dims FROM search_embedding_space")
READ_SPACE_SHARED_SQL = text("SELECT model, dims FROM search_embedding_space FOR SHARE")
INIT_SPACE_SQL = text(
    "INSERT INTO search_embedding_space (id, model, dims) VALUES (1, :model, :dims) "
    "ON CONFLICT (id) DO NOTHING"
)


@dataclass(frozen=True)
class Space:
    model: str
    dims: int
    next_model: str | None = None
    next_dims: int | None = None


def column_dims(conn: Connection, column: str = "embedding") -> int | None:
    """Declared dimensions of a vector column of ``search_index`` (None: untyped)."""
    typmod = conn.execute(COLUMN_DIMS_SQL, {"column": column}).scalar()
    return int(typmod) if typmod is not None and typmod > 0 else None


def current_space(conn: Connection) -> Space | None:
    row = conn.execute(READ_SPACE_SQL).one_or_none()
    return Space(*row) if row else None


def ensure_space(conn: Connection, settings: Settings) -> Space:
    """The index's embedding space, recorded from the settings on first use.

    Raises:
        EmbeddingMismatchError: the configured model, dimensions or vector type
            (AGENTRY_VECTOR_TYPE) differ from the index's; the message says how to fix it.
    """
    space = current_space(conn)
    if space is None:
        dims = column_dims(conn) or settings.embedding_dims
        conn.execute(INIT_SPACE_SQL, {"model": settings.embedding_model, "dims": dims})
        space = current_space(conn)
        assert space is not None
    if space.model != settings.embedding_model or space.dims != settings.embedding_dims:
        raise EmbeddingMismatchError(
            f"the search index holds {space.model} vectors ({space.dims} dims) but this process "
            f"is configured for AGENTRY_EMBEDDING_MODEL={settings.embedding_model} "
            f"(AGENTRY_EMBEDDING_DIMS={settings.embedding_dims}): run `agentry index --reembed` "
            "to rebuild the index with the new model, or set the old values back"
        )
    stored = column_type(conn)
    if stored is not None and stored != settings.vector_type:
        raise EmbeddingMismatchError(
            f"the search index stores its vectors as {stored} but this process is configured "
            f"for AGENTRY_VECTOR_TYPE={settings.vector_type}: run `agentry index --reembed` "
            f"to move the index to {settings.vector_type}, or set AGENTRY_VECTOR_TYPE={stored}"
        )
    return space


def active_model_locked(conn: Connection) -> str | None:
    """The active model, read with a share lock so a re-embed switch cannot interleave."""
    row = conn.execute(READ_SPACE_SHARED_SQL).one_or_none()
    return str(row.model) if row else None
