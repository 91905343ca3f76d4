"""The keyword segment: postings compacted into packed, impact-ordered blocks.

``search_postings`` (revision 0018) is written by triggers, one row per (term, chunk);
reading it costs PostgreSQL about a microsecond per posting and ten with the SQL that
scores them, which at a million chunks is most of a query. The segment (revision 0019,
``search_posting_blocks``) holds the same postings per term, strongest first, in blocks
of :data:`BLOCK` whose row ids and impacts are little-endian int64 / float32 arrays: a
query reads a term's first blocks in one index probe each and scores them in numpy
(core/memory/bm25_blocks.py) at a few nanoseconds per posting.

A rebuild (:func:`rebuild_segment`) *moves* postings: in one transaction it deletes
every posting of ``search_postings`` it can see (``DELETE ... RETURNING`` through
``COPY``), merges them with the current segment's entries of rows that still exist, and
rewrites the blocks. A row is therefore in exactly one place — the segment or the tail
left in ``search_postings`` — in any snapshot: postings committed while the rebuild runs
stay in the tail, and a query statement reads blocks and tail under one snapshot.
Deleted rows' segment entries stay until the next rebuild; they can only loosen bounds,
and rescoring from ``search_index`` drops them. Content changes reach ``search_index``
as delete + insert (core/memory/indexer.py), so a changed chunk is a new row in the tail.

:func:`compact_if_needed` rebuilds when the tail passes AGENTRY_KEYWORD_TAIL_FRACTION
of the segment (and AGENTRY_KEYWORD_COMPACT_MIN postings): after bulk loads, from
``agentry index`` and from the embedding worker's housekeeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
from sqlalchemy import Engine

from config import Settings

Progress = Callable[[str, int, int], None]
BLOCK = 1024
PHASE = "keyword segment"
WRITE_BATCH = 256  # blocks per COPY write between progress reports

LOCK_SQL = "SELECT segment_postings FROM search_keyword_stats WHERE id = 1 FOR UPDATE"
MOVE_SQL = (
    "COPY (DELETE FROM search_postings RETURNING term_id, impact, row_id) TO STDOUT (FORMAT binary)"
)
OLD_SQL = "SELECT term_id, row_ids, impacts FROM search_posting_blocks"
LIVE_SQL = "COPY (SELECT id FROM search_index) TO STDOUT (FORMAT binary)"
CLEAR_SQL = "DELETE FROM search_posting_blocks"
WRITE_SQL = (
    "COPY search_posting_blocks (term_id, block, blocks, max_impact, min_impact, row_ids, "
    "impacts) FROM STDIN (FORMAT binary)"
)
WRITE_TYPES = ["int4", "int4", "int4", "float4", "float4", "bytea", "bytea"]
# A generation no other segment had, in any database: decoded blocks are cached in the
# process by it (core/memory/block_cache.py), and a database created again under the
# same name must not find the old one's blocks there.
NEXT_GENERATION = (
    "GREATEST(segment_generation + 1, "
    "CAST(extract(epoch FROM clock_timestamp()) * 1000000 AS bigint))"
)
DONE_SQL = (
    f"UPDATE search_keyword_stats SET segment_generation = {NEXT_GENERATION}, "
    "segment_postings = %s WHERE id = 1"
)
VACUUM_SQL = "VACUUM (ANALYZE) search_postings, search_posting_blocks"
SIZE_SQL = "SELECT segment_postings FROM search_keyword_stats WHERE id = 1"
TAIL_SQL = "SELECT count(*) FROM (SELECT 1 FROM search_postings LIMIT %s) s"

# Binary COPY tuples: field count, then (length, value) per field, big-endian.
COPY_HEADER = 19
POSTING = np.dtype(
    [("n", ">i2"), ("l1", ">i4"), ("term", ">i4"), ("l2", ">i4"), ("impact", ">f4"),
     ("l3", ">i4"), ("row", ">i8")]
)  # fmt: skip
ROW_ID = np.dtype([("n", ">i2"), ("l1", ">i4"), ("id", ">i8")])


@dataclass(frozen=True)
class SegmentReport:
    postings: int
    blocks: int
    moved: int  # tail postings moved in
    dropped: int  # entries of deleted rows left out
    seconds: float


def pack(values: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def unpack_rows(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i8")


def unpack_impacts(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


def _copy_out(conn: psycopg.Connection, sql: str, dtype: np.dtype) -> np.ndarray:
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(sql) as copy:
        for data in copy:
            buf += data
    body = buf[COPY_HEADER:-2]  # header, and the -1 field count that ends the data
    return np.frombuffer(bytes(body), dtype=dtype)


def _blocks(
    terms: np.ndarray, impacts: np.ndarray, rows: np.ndarray, size: int
) -> Iterator[tuple[int, int, int, float, float, bytes, bytes]]:
    """Rows of search_posting_blocks from postings sorted by term, impact desc."""
    starts = np.flatnonzero(np.r_[True, terms[1:] != terms[:-1]])
    ends = np.r_[starts[1:], len(terms)]
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        count = -(-(e - s) // size)
        for b in range(count):
            lo, hi = s + b * size, min(e, s + (b + 1) * size)
            imp = impacts[lo:hi]
            yield (
                int(terms[s]),
                b,
                count,
                float(imp[0]),
                float(imp[-1]),
                pack(rows[lo:hi], "<i8"),
                pack(imp, "<f4"),
            )


def rebuild_segment(
    conn: psycopg.Connection, *, progress: Progress | None = None, block: int = BLOCK
) -> SegmentReport:
    """Move the tail into the segment and rewrite its blocks, in a transaction of its own.

    Args:
        conn: an idle connection (no transaction open).
        progress: called with ("keyword segment", postings written, postings in all).
        block: postings per block (queries read whatever size they find; tests use
            small blocks to make small collections span many).
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError("rebuild_segment needs an idle connection: it commits its own work")
    start = time.perf_counter()
    with conn.transaction():
        conn.execute(LOCK_SQL)  # one rebuild at a time (a backfill takes the same row)
        tail = _copy_out(conn, MOVE_SQL, POSTING)
        old_terms: list[np.ndarray] = []
        old_rows: list[np.ndarray] = []
        old_impacts: list[np.ndarray] = []
        with conn.cursor(binary=True) as cur:
            cur.execute(OLD_SQL)
            while batch := cur.fetchmany(2048):
                for term_id, row_ids, impacts in batch:
                    ids = unpack_rows(row_ids)
                    old_rows.append(ids)
                    old_impacts.append(unpack_impacts(impacts))
                    old_terms.append(np.full(len(ids), term_id, dtype=np.int32))
        dropped = 0
        if old_rows:
            rows_o = np.concatenate(old_rows)
            live = np.isin(rows_o, _copy_out(conn, LIVE_SQL, ROW_ID)["id"].astype(np.int64))
            dropped = int(len(rows_o) - live.sum())
            terms = np.concatenate([np.concatenate(old_terms)[live], tail["term"]])
            impacts = np.concatenate([np.concatenate(old_impacts)[live], tail["impact"]])
            rows = np.concatenate([rows_o[live], tail["row"]])
        else:
            terms, impacts, rows = tail["term"], tail["impact"], tail["row"]
        terms = terms.astype(np.int32)
        impacts = impacts.astype(np.float32)
        rows = rows.astype(np.int64)
        # The order of the old postings' primary key read backwards: impact, then row id.
        order = np.lexsort((-rows, -impacts, terms))
        terms, impacts, rows = terms[order], impacts[order], rows[order]
        total = len(rows)
        conn.execute(CLEAR_SQL)
        written = blocks = 0
        if progress:
            progress(PHASE, 0, total)
        with conn.cursor() as cur, cur.copy(WRITE_SQL) as copy:
            copy.set_types(WRITE_TYPES)
            for row in _blocks(terms, impacts, rows, block):
                copy.write_row(row)
                blocks += 1
                written += len(row[5]) // 8
                if progress and blocks % WRITE_BATCH == 0:
                    progress(PHASE, written, total)
        conn.execute(DONE_SQL, (total,))
    if progress:
        progress(PHASE, total, total)
    vacuum(conn)
    return SegmentReport(total, blocks, len(tail), dropped, time.perf_counter() - start)


def vacuum(conn: psycopg.Connection) -> None:
    """The moved postings are dead tuples; the tail is read by index-only scans."""
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        conn.execute(VACUUM_SQL)
    finally:
        conn.autocommit = autocommit


def needs_compaction(conn: psycopg.Connection, settings: Settings) -> bool:
    """The tail has passed AGENTRY_KEYWORD_TAIL_FRACTION of the segment (and the minimum)."""
    segment = int(conn.execute(SIZE_SQL).fetchone()[0])  # type: ignore[index]
    cap = max(settings.keyword_compact_min, int(settings.keyword_tail_fraction * segment))
    tail = int(conn.execute(TAIL_SQL, (cap + 1,)).fetchone()[0])  # type: ignore[index]
    conn.rollback()
    return tail > cap


def compact_if_needed(
    conn: psycopg.Connection, settings: Settings, *, progress: Progress | None = None
) -> SegmentReport | None:
    """Rebuild the segment when the tail has grown past its share; the report when it did."""
    if not needs_compaction(conn, settings):
        return None
    return rebuild_segment(conn, progress=progress)


def compact(
    engine: Engine,
    settings: Settings,
    *,
    force: bool = False,
    progress: Progress | None = None,
    block: int = BLOCK,
) -> SegmentReport | None:
    """:func:`compact_if_needed` (or an unconditional rebuild) on a connection of ``engine``."""
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert isinstance(pg, psycopg.Connection)
        pg.rollback()
        if force:
            return rebuild_segment(pg, progress=progress, block=block)
        return compact_if_needed(pg, settings, progress=progress)
    finally:
        raw.close()
