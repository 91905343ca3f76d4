"""Bulk loading: binary COPY into ``search_index``, then build or extend the HNSW index.

Inserting row by row into an HNSW index costs a graph insertion per row; a large
load is much faster as COPY into an unindexed table followed by one (parallel)
index build. :func:`bulk_load` drops the index first when the load is larger than
what the table already holds, and otherwise lets COPY extend the existing index.
Index builds run with AGENTRY_INDEX_BUILD_MEMORY as ``maintenance_work_mem`` and
AGENTRY_INDEX_BUILD_WORKERS parallel maintenance workers.

These functions own their transactions (a dedicated psycopg connection): bulk work
is an operation of its own, not part of a request.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo
from psycopg.types.json import Jsonb

from config import Settings
from core.memory.keyword_segment import compact_if_needed
from core.memory.storage import opclass
from core.models.search import HNSW_INDEX_NAME

COPY_SQL = (
    "COPY search_index (entity_type, entity_id, chunk, content, embedding, embedding_model, "
    "metadata, user_id, created_at) FROM STDIN WITH (FORMAT BINARY)"
)
# The embedding's type (vector or halfvec) is the column's, read at load time.
COPY_TYPES = ["text", "uuid", "int4", "text", "{kind}", "text", "jsonb", "uuid", "timestamptz"]
COLUMN_TYPE_SQL = (
    "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = 'search_index'::regclass AND a.attname = 'embedding'"
)
COUNT_SQL = "SELECT count(*) FROM search_index"
INDEX_EXISTS_SQL = "SELECT to_regclass(%s) IS NOT NULL"
DROP_INDEX_SQL = f"DROP INDEX IF EXISTS {HNSW_INDEX_NAME}"
INDEX_SIZE_SQL = "SELECT pg_relation_size(to_regclass(%s))"
# HNSW builds report the heap blocks scanned (tuples_total stays 0 in pgvector 0.8).
BUILD_PROGRESS_SQL = (
    "SELECT tuples_done, tuples_total, blocks_done, blocks_total "
    "FROM pg_stat_progress_create_index WHERE pid = %s"
)


class _HalfvecArrayDumper(Dumper):
    """numpy float32 → halfvec's binary form, directly (pgvector's HalfVector costs 3x)."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        vec = np.asarray(obj, dtype=np.float32)
        return struct.pack(">HH", len(vec), 0) + vec.astype(">f2").tobytes()


def _register_halfvec_arrays(conn: psycopg.Connection[Any]) -> None:
    """COPY with set_types takes the dumper by type oid: numpy arrays go straight in."""
    info = TypeInfo.fetch(conn, "halfvec")
    assert info is not None  # the column has this type
    conn.adapters.register_dumper(
        np.ndarray, type("HalfvecArrayDumper", (_HalfvecArrayDumper,), {"oid": info.oid})
    )


@dataclass
class BulkRow:
    """One chunk to load, already embedded."""

    entity_type: str
    entity_id: uuid.UUID
    content: str
    embedding: Any  # numpy float32 array
    model: str
    user_id: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    chunk: int = 0
    created_at: datetime | None = None


@dataclass
class BulkReport:
    rows: int
    copy_seconds: float
    index_seconds: float
    rebuilt_index: bool
    index_bytes: int
    # Keyword segment rebuilt after the load (core/memory/keyword_segment.py); 0 if not needed.
    keyword_segment_seconds: float = 0.0


def build_sql(
    settings: Settings,
    *,
    column: str = "embedding",
    name: str = HNSW_INDEX_NAME,
    concurrently: bool = False,
) -> list[str]:
    """Statements that build an HNSW cosine index with the configured build resources.

    The operator class follows AGENTRY_VECTOR_TYPE (the column's type by then).
    """
    how = "CONCURRENTLY " if concurrently else ""
    return [
        f"SET maintenance_work_mem = '{settings.index_build_memory}'",
        f"SET max_parallel_maintenance_workers = {int(settings.index_build_workers)}",
        f"CREATE INDEX {how}IF NOT EXISTS {name} ON search_index USING hnsw "
        f"({column} {opclass(settings.vector_type)}) WITH (m = {int(settings.hnsw_m)}, "
        f"ef_construction = {int(settings.hnsw_ef_construction)})",
        "RESET maintenance_work_mem",
        "RESET max_parallel_maintenance_workers",
    ]


def build_index(
    conninfo: str,
    settings: Settings,
    *,
    progress: Callable[[int, int], None] | None = None,
    **kwargs: Any,
) -> float:
    """Build the HNSW index (autocommit, so CONCURRENTLY works); returns seconds taken.

    Args:
        progress: called with (done, total) about twice a second, from PostgreSQL's
            ``pg_stat_progress_create_index`` for this build (tuples, or heap blocks).
    """
    start = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        watcher = _BuildWatcher(conninfo, conn.info.backend_pid, progress) if progress else None
        try:
            for stmt in build_sql(settings, **kwargs):
                conn.execute(stmt)
        finally:
            if watcher:
                watcher.finish()
    return time.perf_counter() - start


class _BuildWatcher(threading.Thread):
    """Polls the progress of one backend's index build from a second connection."""

    def __init__(self, conninfo: str, pid: int, report: Callable[[int, int], None]) -> None:
        super().__init__(daemon=True)
        self.conninfo, self.pid, self.report = conninfo, pid, report
        self.done = threading.Event()
        self.last = (0, 0)
        self.start()

    def run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.done.wait(0.5):
                row = conn.execute(BUILD_PROGRESS_SQL, (self.pid,)).fetchone()
                if row and (row[1] or row[3]):
                    done, total = (row[0], row[1]) if row[1] else (row[2], row[3])
                    self.last = (int(done), int(total))
                    self.report(*self.last)

    def finish(self) -> None:
        self.done.set()
        self.join(timeout=5)
        total = self.last[1] or 1
        self.report(total, total)


def bulk_load(
    conninfo: str,
    rows: Iterable[BulkRow],
    settings: Settings,
    *,
    expected: int | None = None,
    progress: Callable[[int], None] | None = None,
    build_progress: Callable[[int, int], None] | None = None,
    keyword_progress: Callable[[str, int, int], None] | None = None,
    keyword_segment: bool = True,
) -> BulkReport:
    """Load embedded chunks with binary COPY, then build or extend the HNSW index.

    Args:
        conninfo: libpq URI of the database (``Database.conninfo``).
        rows: the chunks to load.
        settings: index build parameters and resources.
        expected: how many rows are coming (decides drop-and-rebuild vs extend).
        progress: called with the number of rows copied so far, every 1000 rows.
        build_progress: called with (done, total) while the index builds.
        keyword_progress: called with (phase, done, total) while the keyword segment builds.
        keyword_segment: rebuild the keyword segment if the load grew its tail enough
            (False: leave the postings in the tail, as benchmarks of the postings plan do).

    Returns:
        Counts and timings.
    """
    with psycopg.connect(conninfo) as conn:
        register_vector(conn)
        existing = conn.execute(COUNT_SQL).fetchone()[0]  # type: ignore[index]
        rebuild = expected is None or expected > existing
        if rebuild:
            conn.execute(DROP_INDEX_SQL)
        kind = str(conn.execute(COLUMN_TYPE_SQL).fetchone()[0])  # type: ignore[index]
        if kind == "halfvec":
            _register_halfvec_arrays(conn)
        start = time.perf_counter()
        n = 0
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            copy.set_types([t.format(kind=kind) for t in COPY_TYPES])
            for row in rows:
                copy.write_row(
                    [
                        row.entity_type,
                        row.entity_id,
                        row.chunk,
                        row.content,
                        np.asarray(row.embedding, dtype=np.float32),
                        row.model,
                        Jsonb(row.metadata),
                        row.user_id,
                        row.created_at or datetime.now().astimezone(),
                    ]
                )
                n += 1
                if progress and n % 1000 == 0:
                    progress(n)
        conn.commit()
        copy_seconds = time.perf_counter() - start
        if progress:
            progress(n)
    segment = None
    if keyword_segment:
        with psycopg.connect(conninfo) as conn:
            # The load's postings are the tail now: packed into the segment before the
            # vacuum below, which then also clears the moved rows.
            segment = compact_if_needed(conn, settings, progress=keyword_progress)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # Vacuumed before the HNSW index exists (cheap: the heap and the small
        # indexes): otherwise autovacuum wakes up for the inserts a moment later and
        # scans the whole HNSW graph while the new data is being used (measured: it
        # cut the ingest rate right after a 100k load by a third). The postings the
        # COPY's trigger wrote are vacuumed too: keyword search reads them by
        # index-only scans, which visit the heap for every posting until the
        # visibility map is set (measured on 100k chunks: keyword p95 260 -> 159 ms).
        conn.execute(
            "VACUUM (ANALYZE) search_index, search_postings, search_terms"
            if rebuild
            else "ANALYZE search_index, search_postings, search_terms"
        )
    index_seconds = build_index(conninfo, settings, progress=build_progress) if rebuild else 0.0
    with psycopg.connect(conninfo) as conn:
        size = conn.execute(INDEX_SIZE_SQL, (HNSW_INDEX_NAME,)).fetchone()[0]  # type: ignore[index]
    return BulkReport(
        n,
        copy_seconds,
        index_seconds,
        rebuild,
        int(size or 0),
        segment.seconds if segment else 0.0,
    )
