"""Keyword ranks for hybrid search: one budgeted read of the blocks, ranked by what it read.

Hybrid search fuses ranks, not scores (core/memory/search.py), so its keyword half needs
a good order of the best chunks, not proven BM25 scores. Impact-ordered lists give one
for a fixed budget of postings ("anytime" ranking over impact-ordered indexes, as JASS
does — Lin & Trotman, ICTIR 2015): every term's list is read strongest first, so what is
left unread of a chunk's score is bounded by the term's frontier, and the part read is
most of the score wherever the score is high. So this half reads once — the rarest terms
whole, the others sharing what is left of AGENTRY_HYBRID_KEYWORD_BUDGET (the blocks
plan's first round, core/memory/bm25_reads.py) — ranks chunks by the part read, and asks
PostgreSQL only which of the best pass the filter and still exist: a primary-key probe
per row instead of rescoring its ``tsvector`` (tens of microseconds each, most of the
blocks plan's time at a million chunks).

When every list was read whole (any collection whose matches fit the budget: CISI's,
a user's own) the parts are whole scores and the order is the exact BM25 order, up to
the float noise between float4 impacts and the SQL score (near ties may swap).
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import psycopg
from sqlalchemy import Connection

from core.db.driver import driver_of, driver_statement
from core.memory.block_cache import BlockCache
from core.memory.bm25_reads import Fetched, Lists, fetch_round, first_lists, restarting
from core.memory.bm25_settle import GROWTH, SETTLE_MAX
from core.memory.bm25_sums import read_once, sparse_bounds
from core.memory.bm25_types import Beside, KeywordPlan, KeywordRun, Terms
from core.memory.strategy import SNIPPET_CHARS

# Which of the best-ranked chunks exist and pass the filter, with what the fusion needs
# of them, and what a hit shows for those that may be shown (``:shown``, and pending
# rows: see ranked_plan). Parsing a row's metadata and date costs about as much as
# finding it, and most of these rows are never shown.
_SHOWN = "s.embedding IS NULL OR s.id = ANY(CAST(:shown AS bigint[]))"
KEYS_SQL = (
    "SELECT s.id, s.entity_type, s.entity_id, s.chunk, s.embedding IS NULL AS pending, "
    f"CASE WHEN {_SHOWN} THEN left(s.content, {SNIPPET_CHARS}) END, "
    f"CASE WHEN {_SHOWN} THEN s.metadata END, CASE WHEN {_SHOWN} THEN s.created_at END "
    "FROM search_index s WHERE s.id = ANY(CAST(:ids AS bigint[])) AND {where}"
)


class RankedRow(NamedTuple):
    """A chunk ranked by the part of its BM25 score read (``score``, a lower bound);
    ``content`` is its snippet; content, metadata and date are None for a row not
    shown (see :func:`ranked_plan`)."""

    id: int
    entity_type: str
    entity_id: Any
    chunk: int
    pending: bool
    score: float
    content: str | None
    metadata: dict[str, Any] | None
    created_at: datetime | None


def ranked_plan(
    conn: Connection,
    terms: Terms,
    where: str,
    params: dict[str, Any],
    *,
    limit: int,
    budget: int,
    generation: int,
    max_row_id: int,
    cache: BlockCache | None = None,
    beside: Beside | None = None,
    shown: int | None = None,
) -> KeywordRun:
    """The ``limit`` best chunks by the part of their score read within ``budget``.

    ``proven`` is True only when every list was read whole (the order is then exact);
    rows are :class:`RankedRow`. ``beside(pg)`` is entered while the last read is added
    up (see :data:`Beside`). Only the first ``shown`` rows (default all) and the pending
    ones come with snippet, metadata and date: hybrid's fusion cannot show the others
    (core/memory/hybrid.py, keyword_shown).
    """

    def attempt(pg: psycopg.Connection, gen: int) -> KeywordRun:
        lists, want = first_lists(terms, limit, budget, spend=True)
        rounds = 0
        read: list[Fetched] = []
        more: list[int] | None = want
        while more is not None:
            rounds += 1
            read.append(fetch_round(pg, terms, lists, more, gen, cache))
            # Adding up the read costs about as much as a vector query: hybrid's vector
            # half runs on the server meanwhile, and the probe of the best rows is sent
            # behind it, so both come back in one wait.
            with beside(pg) if beside is not None else nullcontext():
                lists.seg_read += sum(len(a) for ids, _ in read[-1].values() for a in ids)
                if (more := _more(lists, budget)) is None:
                    rows, known = _parts(lists, read, max_row_id)
                    keys_sql = KEYS_SQL.format(where=where)
                    found, complete = _passing(
                        conn, keys_sql, params, rows, known, limit,
                        limit if shown is None else shown,
                    )  # fmt: skip
        whole = all(lists.exhausted(i) for i in range(len(terms.ids)))
        return KeywordRun(
            KeywordPlan.blocks, found, rounds, lists.read(), lists.blocks_read,
            proven=whole and (len(found) >= limit or complete),
        )  # fmt: skip

    return restarting(conn, generation, attempt)


def _parts(lists: Lists, read: list[Fetched], max_row_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Every row read and the part of its score read, segment and tail (a row written
    since the segment was built may be in both: two entries, as in the blocks plan)."""
    ids: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for got in read:
        for i, (id_parts, imp_parts) in got.items():
            ids += id_parts
            vals += [np.multiply(a, lists.weights[i], dtype=np.float64) for a in imp_parts]
    s_rows, s_known = read_once(
        np.concatenate(ids) if ids else np.empty(0, dtype=np.int64),
        np.concatenate(vals) if vals else np.empty(0),
        max_row_id,
    )
    zero = np.zeros(len(lists.weights))
    t_rows, t_known, _ = sparse_bounds(lists.tail_ids, lists.tail_val, lists.tail_term, zero)
    return np.concatenate([s_rows, t_rows]), np.concatenate([s_known, t_known])


def _more(lists: Lists, budget: int) -> list[int] | None:
    """Blocks to read next, or None: every list is whole or the budget is (about) spent.
    The first read spends the budget when the segment's blocks are BLOCK postings; this
    only tops it up when its guess from document frequencies fell well short (smaller
    blocks): the rest shared by the open lists, the shortest first. A read short by a
    few partly filled last blocks is not worth another statement."""
    n = len(lists.depth)
    if 2 * lists.read() >= budget or all(lists.exhausted(i) for i in range(n)):
        return None
    per_block = max(1, lists.seg_read // max(lists.blocks_read, 1))
    room = max(1, (budget - lists.read()) // per_block)
    want = list(lists.depth)
    seg_open = sorted(
        (i for i in range(n) if not lists.seg_done(i)),
        key=lambda i: (lists.blocks[i] or 0) - lists.depth[i],
    )
    for j, i in enumerate(seg_open):
        share = max(1, min(room // (len(seg_open) - j), (lists.blocks[i] or 0) - lists.depth[i]))
        want[i] += share
        room -= share
    for i in range(n):
        if not lists.tail_done[i]:
            lists.tail_lim[i] *= GROWTH
    return want


def _passing(
    conn: Connection,
    keys_sql: str,
    params: dict[str, Any],
    rows: np.ndarray,
    known: np.ndarray,
    limit: int,
    shown: int,
) -> tuple[list[RankedRow], bool]:
    """The best ``limit`` of ``rows`` by ``known`` that pass the filter, best first (ties
    by id, as the exact scan), and whether every row was asked about. Under a filter
    most may not pass: more are asked for, GROWTH times as many each time, up to
    SETTLE_MAX per row wanted. Each batch is every row between two known values, so
    rows that tie at a batch's edge are asked about once. Sent on the driver connection:
    SQLAlchemy's rows cost more here than the statement."""
    pg = driver_of(conn)
    out: list[RankedRow] = []
    n, asked, take, high = len(rows), 0, limit + limit // 4 + 8, np.inf
    while len(out) < limit and asked < min(n, SETTLE_MAX * limit):
        upto = min(n, asked + take)
        low = _kth_largest(known, upto)
        batch = np.flatnonzero((known >= low) & (known < high) if asked else known >= low)
        batch = batch[np.lexsort((rows[batch], -known[batch]))]
        ids = rows[batch].tolist()
        # A row of this batch is at most the (len(out) + its place)-th passing one.
        show = ids[: max(0, shown - len(out))]
        with pg.cursor() as cur:
            cur.execute(*driver_statement(conn, keys_sql, {**params, "ids": ids, "shown": show}))
            got = {r[0]: r for r in cur}
        for i, v in zip(ids, known[batch].tolist(), strict=True):
            r = got.get(i)
            if r is not None:
                out.append(RankedRow(i, r[1], r[2], r[3], r[4], v, r[5], r[6], r[7]))
        asked += len(batch)
        high, take = low, take * GROWTH
    return out[:limit], asked >= n


def _kth_largest(values: np.ndarray, k: int) -> float:
    """The ``k``-th largest of ``values`` (1 <= k <= len). Partitioning a read's 40,000
    parts took 0.3 ms for 70 rows wanted; here a sample's k-th largest bounds it first
    and only the values above the bound are partitioned (exact: if at least ``k`` values
    pass the bound, the k-th largest is among them)."""
    n = len(values)
    step = n // (8 * k)
    if step >= 4:
        sample = values[::step]
        j = min(len(sample), 2 * (k // step) + 8)
        bound = np.partition(sample, len(sample) - j)[len(sample) - j]
        above = values[values >= bound]
        if len(above) >= k:
            return float(np.partition(above, len(above) - k)[len(above) - k])
    return float(np.partition(values, n - k)[n - k])
