"""How vectors are stored: ``vector`` (4-byte floats) or ``halfvec`` (2-byte), AGENTRY_VECTOR_TYPE.

``search_index.embedding``, its HNSW index (the operator class) and the casts of every
vector query follow the configured type. An index without vectors takes the configured
type when the database is prepared (instant on an empty table); one holding vectors
keeps its type until ``agentry index --reembed`` moves it (core/memory/reembed.py), and
servers refuse to start on a mismatch with that fix in the message (core/memory/space.py).
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from config import Settings
from core.db.extensions import format_version, installed_version
from core.errors import ConfigError
from core.models.search import HNSW_INDEX_NAME

OPCLASS = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
HALFVEC_SINCE = (0, 7, 0)

COLUMN_TYPE_SQL = text(
    "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = 'search_index'::regclass AND a.attname = :column AND NOT a.attisdropped"
)
HAS_VECTORS_SQL = text("SELECT EXISTS (SELECT 1 FROM search_index WHERE embedding IS NOT NULL)")
DROP_INDEX_SQL = f"DROP INDEX IF EXISTS {HNSW_INDEX_NAME}"
ALTER_TYPE_SQL = (
    "ALTER TABLE search_index ALTER COLUMN embedding TYPE {kind}({dims}) "
    "USING embedding::{kind}({dims})"
)


def opclass(kind: str) -> str:
    """The HNSW cosine operator class of a vector type."""
    return OPCLASS[kind]


def column_type(conn: Connection, column: str = "embedding") -> str | None:
    """The type name (``vector``/``halfvec``) of a column of ``search_index``; None: absent."""
    found = conn.execute(COLUMN_TYPE_SQL, {"column": column}).scalar()
    return str(found) if found is not None else None


def check_supported(conn: Connection, kind: str) -> None:
    """Raises ConfigError when the server's pgvector cannot store ``kind``."""
    version = installed_version(conn)
    if kind == "halfvec" and (version is None or version < HALFVEC_SINCE):
        raise ConfigError(
            f"AGENTRY_VECTOR_TYPE=halfvec needs pgvector >= 0.7 (this server has "
            f"{format_version(version)}): upgrade pgvector or set AGENTRY_VECTOR_TYPE=vector"
        )


def align_empty_index(conn: Connection, settings: Settings) -> bool:
    """Give an index without vectors the configured type; True when it changed.

    An index holding vectors is left alone: converting rewrites the table, which is
    ``agentry index --reembed``'s job (without downtime), not start-up's.
    """
    current = column_type(conn)
    if current is None or current == settings.vector_type:
        return False
    if conn.execute(HAS_VECTORS_SQL).scalar():
        return False
    check_supported(conn, settings.vector_type)
    from core.memory.bulk import build_sql  # bulk imports this module

    conn.execute(text(DROP_INDEX_SQL))
    kind, dims = settings.vector_type, int(settings.embedding_dims)
    conn.execute(text(ALTER_TYPE_SQL.format(kind=kind, dims=dims)))
    for stmt in build_sql(settings):  # empty: instant, inside this transaction
        conn.execute(text(stmt))
    return True
