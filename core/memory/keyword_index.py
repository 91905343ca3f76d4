"""Keeping the BM25 postings right: folding df changes, backfill, re-weighting.

Triggers on ``search_index`` (revision 0018) write postings and document-frequency
deltas in the writer's transaction. This module does the rest, each step in
transactions of its own:

* :func:`fold_deltas` adds ``search_term_deltas`` into ``search_terms.df`` and the
  chunk totals (the embedding worker does it every poll, ``agentry index`` and bulk
  loads too). Queries add unfolded deltas themselves, so folding is housekeeping, not
  correctness.
* :func:`backfill` writes postings for rows that predate them (the migration's
  existing rows, or all rows after a re-weighting), in batches with progress. Until it
  is done keyword search uses the exact scan (core/memory/bm25.py).
* :func:`reweigh_if_drifted` — the stored weights use one avgdl; when the collection's
  average chunk length has moved more than :data:`AVGDL_DRIFT` away from it, every
  posting is rewritten (reset, then backfill). Rewriting on every insert is what the
  split between stored impacts and query-time IDF avoids; this happens only when the
  kind of text indexed changes (measured avgdl: chat turns ~8 lexemes, CISI abstracts ~70).
* :func:`maintain` ends with a segment rebuild when the tail needs one
  (core/memory/keyword_segment.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from config import Settings
from core.memory.keyword_segment import NEXT_GENERATION, compact

Progress = Callable[[str, int, int], None]
AVGDL_DRIFT = 0.25

FOLD_SQL = text(
    """
WITH moved AS (DELETE FROM search_term_deltas RETURNING term_id, delta),
sums AS (SELECT term_id, sum(delta) AS d FROM moved GROUP BY term_id),
terms AS (
    UPDATE search_terms t SET df = t.df + s.d FROM sums s WHERE t.id = s.term_id RETURNING 1
)
UPDATE search_keyword_stats SET
    chunks = chunks + COALESCE((SELECT d FROM sums WHERE term_id = 0), 0),
    total_length = total_length + COALESCE((SELECT d FROM sums WHERE term_id = -1), 0)
WHERE id = 1
RETURNING (SELECT count(*) FROM moved)
"""
)
HAS_DELTAS_SQL = text("SELECT EXISTS (SELECT 1 FROM search_term_deltas)")
STATE_SQL = text(
    "SELECT s.avgdl, s.backfill_upto, s.backfilled, "
    "s.chunks + COALESCE((SELECT sum(delta) FROM search_term_deltas WHERE term_id = 0), 0) "
    "AS chunks, s.total_length + COALESCE((SELECT sum(delta) FROM search_term_deltas "
    "WHERE term_id = -1), 0) AS total_length FROM search_keyword_stats s WHERE s.id = 1"
)
# Writers wait while a batch is written (SHARE blocks INSERT/DELETE, not SELECT), so a
# row deleted meanwhile cannot be half counted; the stats row serializes backfills.
LOCK_SQL = (
    text("SELECT 1 FROM search_keyword_stats WHERE id = 1 FOR UPDATE"),
    text("LOCK TABLE search_index IN SHARE MODE"),
)
REMAINING_SQL = text(
    "SELECT count(*) FROM search_index s, search_keyword_stats k "
    "WHERE k.id = 1 AND s.id > k.backfilled AND s.id <= k.backfill_upto"
)
BATCH_SQL = text(
    """
WITH ids AS MATERIALIZED (
    SELECT s.id, s.tsv FROM search_index s, search_keyword_stats k
    WHERE k.id = 1 AND s.id > k.backfilled AND s.id <= k.backfill_upto
    ORDER BY s.id LIMIT :limit
)
SELECT search_keyword_index(array_agg(id ORDER BY id), array_agg(tsv ORDER BY id)) AS n,
       max(id) AS last
FROM ids
"""
)
ADVANCE_SQL = text(
    "UPDATE search_keyword_stats SET backfilled = "
    "CASE WHEN CAST(:last AS bigint) IS NULL THEN backfill_upto ELSE :last END WHERE id = 1"
)
RESET_SQL = (
    text("TRUNCATE search_postings, search_term_deltas, search_posting_blocks"),
    text("UPDATE search_terms SET df = 0 WHERE df <> 0"),
    text(
        "UPDATE search_keyword_stats SET avgdl = :avgdl, chunks = 0, total_length = 0, "
        f"segment_generation = {NEXT_GENERATION}, segment_postings = 0, backfilled = 0, "
        "backfill_upto = (SELECT COALESCE(max(id), 0) FROM search_index) WHERE id = 1"
    ),
)


VACUUM_SQL = text("VACUUM (ANALYZE) search_postings, search_terms")


@dataclass(frozen=True)
class KeywordState:
    avgdl: float
    live_avgdl: float | None
    pending_backfill: bool
    chunks: int


def state(conn: Connection) -> KeywordState:
    row = conn.execute(STATE_SQL).one()
    live = row.total_length / row.chunks if row.chunks else None
    return KeywordState(
        float(row.avgdl),
        float(live) if live is not None else None,
        int(row.backfilled) < int(row.backfill_upto),
        int(row.chunks),
    )


def fold_deltas(engine: Engine) -> int:
    """Fold pending df changes into the vocabulary; returns the delta rows folded."""
    with engine.connect() as conn:
        if not conn.execute(HAS_DELTAS_SQL).scalar():
            return 0
    with engine.begin() as conn:
        return int(conn.execute(FOLD_SQL).scalar() or 0)


def backfill(engine: Engine, *, batch_size: int = 5000, progress: Progress | None = None) -> int:
    """Write postings for every row that has none yet; returns the rows indexed."""
    with engine.connect() as conn:
        total = int(conn.execute(REMAINING_SQL).scalar_one())
    done = 0
    while True:
        with engine.begin() as conn:
            for stmt in LOCK_SQL:
                conn.execute(stmt)
            row = conn.execute(BATCH_SQL, {"limit": batch_size}).one()
            conn.execute(ADVANCE_SQL, {"last": row.last})
        if row.last is None:
            break
        done += int(row.n)
        if progress:
            progress("keyword index", done, max(total, done))
    fold_deltas(engine)
    if done:
        vacuum_postings(engine)
    return done


def vacuum_postings(engine: Engine) -> None:
    """Set the visibility map of freshly written postings and refresh their statistics.

    Keyword search reads postings by index-only scans, which visit the heap for every
    posting of a page not yet marked all-visible; autovacuum gets there only later.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(VACUUM_SQL)


def reweigh_if_drifted(engine: Engine, *, progress: Progress | None = None) -> bool:
    """Rewrite every posting with the current avgdl when it drifted; True when it did."""
    fold_deltas(engine)
    with engine.connect() as conn:
        current = state(conn)
    live = current.live_avgdl
    if live is None or live <= 0 or abs(live / current.avgdl - 1) <= AVGDL_DRIFT:
        return False
    with engine.begin() as conn:
        for stmt in LOCK_SQL:
            conn.execute(stmt)
        for stmt in RESET_SQL:
            conn.execute(stmt, {"avgdl": live})
    backfill(engine, progress=progress)
    return True


def maintain(engine: Engine, settings: Settings, *, progress: Progress | None = None) -> None:
    """Everything ``agentry index`` does for the keyword index: fold, re-weigh, backfill,
    and rebuild the segment when its tail has grown past its share."""
    if not reweigh_if_drifted(engine, progress=progress):
        backfill(engine, progress=progress)
    compact(engine, settings, progress=progress)
