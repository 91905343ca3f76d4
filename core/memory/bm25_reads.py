"""Reading the keyword segment's blocks and tail, round by round (core/memory/bm25_blocks.py
and core/memory/bm25_ranks.py both read through here).

Each round is one statement, so blocks and tail are read under one snapshot: per query
term the next blocks of its segment list (core/memory/keyword_segment.py, strongest
first) and the strongest ``tlim`` postings of its tail in ``search_postings``, with the
segment's generation. Decoded blocks are kept in the process by generation
(core/memory/block_cache.py). A rebuild between two rounds of one query (the generation
moved) starts the query over (:func:`restarting`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Connection, text

from core.db.driver import driver_of
from core.memory.block_cache import Block, BlockCache, Key, server_of
from core.memory.bm25_sums import SparseSums, Sums
from core.memory.bm25_types import FirstTails, KeywordPlan, KeywordRun, Terms
from core.memory.keyword_segment import BLOCK

ROUND_SQL = """
WITH t AS (
    SELECT * FROM unnest(%(tids)s::int[], %(lo)s::int[], %(hi)s::int[], %(tlim)s::int[])
        AS t(term_id, lo, hi, tlim)
)
SELECT 0 AS kind, b.term_id, b.block, b.blocks::bigint AS n, b.min_impact, b.row_ids,
       b.impacts, NULL::bigint[] AS tail_ids, NULL::real[] AS tail_impacts
FROM t JOIN search_posting_blocks b
  ON b.term_id = t.term_id AND b.block >= t.lo AND b.block < t.hi
UNION ALL
SELECT 1, t.term_id, NULL, NULL, NULL, NULL, NULL, p.ids, p.imps
FROM t CROSS JOIN LATERAL (
    SELECT array_agg(x.row_id) AS ids, array_agg(x.impact) AS imps FROM (
        SELECT p.row_id, p.impact FROM search_postings p WHERE p.term_id = t.term_id
        ORDER BY p.impact DESC, p.row_id DESC LIMIT t.tlim
    ) x
) p
WHERE t.tlim > 0
UNION ALL
SELECT 2, NULL, NULL, segment_generation, NULL, NULL, NULL, NULL, NULL
FROM search_keyword_stats WHERE id = 1
"""
# Each term's strongest tail postings, flattened in term order, for the statement that
# finds the query's terms (``qt``: core/memory/bm25.py QUERY_SQL); see FirstTails.
FIRST_TAILS_SELECT = """
SELECT array_agg(p.term_id ORDER BY p.term_id, p.impact DESC, p.row_id DESC) AS terms,
       array_agg(p.row_id ORDER BY p.term_id, p.impact DESC, p.row_id DESC) AS ids,
       array_agg(p.impact ORDER BY p.term_id, p.impact DESC, p.row_id DESC) AS imps
FROM qt t CROSS JOIN LATERAL (
    SELECT p.term_id, p.row_id, p.impact FROM search_postings p WHERE p.term_id = t.id
    ORDER BY p.impact DESC, p.row_id DESC LIMIT :tlim
) p
"""
FIRST_TAILS_COLUMNS = "tl.terms AS tail_terms, tl.ids AS tail_ids, tl.imps AS tail_imps"
# The segment a query restarts on after a rebuild committed between two of its rounds.
GENERATION_SQL = text("SELECT segment_generation FROM search_keyword_stats WHERE id = 1")
# Rare terms are read whole in the first round up to EXHAUST postings in all; the others
# start with FIRST_BLOCKS blocks and TAIL0 tail postings; each later round reads GROWTH
# times deeper.
EXHAUST = 65_536
FIRST_BLOCKS = 1
TAIL0 = 256
RESTARTS = 3
LONG = 8  # open lists this many times the budget left: it is read in the first round


class SegmentChanged(Exception):
    """A rebuild committed between two rounds of one query."""


@dataclass
class Lists:
    """What has been read so far, per query term (the segment's postings are summed
    into :mod:`core.memory.bm25_sums` as they arrive; the tail is re-read each round)."""

    weights: np.ndarray
    depth: list[int]  # segment blocks read
    blocks: list[int | None]  # segment blocks in all (None: not seen yet)
    seg_front: list[float]
    tail_lim: list[int]
    tail_front: list[float]
    tail_done: list[bool]
    tail_ids: list[np.ndarray] = field(default_factory=list)
    tail_val: list[np.ndarray] = field(default_factory=list)
    tail_term: list[int] = field(default_factory=list)
    seg_read: int = 0
    blocks_read: int = 0

    def seg_done(self, i: int) -> bool:
        n = self.blocks[i]
        return n is not None and self.depth[i] >= n

    def exhausted(self, i: int) -> bool:
        return self.seg_done(i) and self.tail_done[i]

    def read(self) -> int:
        return self.seg_read + sum(len(a) for a in self.tail_ids)


def first_tail(limit: int) -> int:
    """Tail postings the first round reads per term (rare terms: all of them)."""
    return max(4 * limit, TAIL0)


def first_tails(row: Any, lim: int, generation: int) -> FirstTails:
    """The tails of QUERY_SQL's row (FIRST_TAILS_COLUMNS) by term."""
    term = np.asarray(row.tail_terms or [], dtype=np.int64)
    ids = np.asarray(row.tail_ids or [], dtype=np.int64)
    imps = np.asarray(row.tail_imps or [], dtype=np.float64)
    cuts = np.flatnonzero(np.diff(term)) + 1
    parts = zip(np.split(term, cuts), np.split(ids, cuts), np.split(imps, cuts), strict=True)
    by_term = {int(t[0]): (i, v) for t, i, v in parts if len(t)}
    return FirstTails(lim, generation, by_term)


def first_lists(
    terms: Terms, limit: int, budget: int, *, spend: bool = False
) -> tuple[Lists, list[int]]:
    """Lists before the first round, and the segment blocks it reads per term
    (``spend``: all of ``budget``, for a query read once, core/memory/bm25_ranks.py)."""
    n = len(terms.ids)
    want = [FIRST_BLOCKS] * n
    tail = [first_tail(limit)] * n
    room = min(EXHAUST, budget)
    for i in sorted(range(n), key=lambda i: terms.dfs[i]):
        if terms.dfs[i] > room:
            break
        want[i] = max(want[i], -(-terms.dfs[i] // BLOCK))
        tail[i] = max(tail[i], terms.dfs[i] + 1)  # one more than exist: seen to be exhausted
        room -= terms.dfs[i]
    first = sum(min(terms.dfs[i], want[i] * BLOCK) for i in range(n))
    left = [i for i in range(n) if terms.dfs[i] > want[i] * BLOCK]
    long = sum(terms.dfs[i] for i in left) > LONG * (budget - first)
    if left and (spend or long) and budget > first:
        # Long lists, more than the budget could read GROWTH rounds over (or a query
        # read once): the budget is spent in this round, shared by the open lists (the
        # rarest first, what a short one leaves going to the longer), so the query
        # settles after one read.
        more = (budget - first) // BLOCK
        for j, i in enumerate(sorted(left, key=lambda i: terms.dfs[i])):
            share = max(0, min(more // (len(left) - j), -(-terms.dfs[i] // BLOCK) - want[i]))
            want[i] += share
            more -= share
    lists = Lists(
        weights=np.asarray(terms.weights, dtype=np.float64),
        depth=[0] * n,
        blocks=[None] * n,
        seg_front=[math.inf] * n,
        tail_lim=tail,
        tail_front=[math.inf] * n,
        tail_done=[False] * n,
    )
    return lists, want


def read_round(
    pg: psycopg.Connection,
    terms: Terms,
    lists: Lists,
    sums: Sums | SparseSums,
    want: list[int],
    generation: int,
    cache: BlockCache | None = None,
) -> None:
    """Read segment blocks [depth, want) and the tail's first tail_lim postings per term,
    and add the blocks' postings into ``sums``."""
    add_round(fetch_round(pg, terms, lists, want, generation, cache), lists, sums)


# Per query term read: its blocks' row ids and impacts, in the order read.
Fetched = dict[int, tuple[list[np.ndarray], list[np.ndarray]]]


def fetch_round(
    pg: psycopg.Connection,
    terms: Terms,
    lists: Lists,
    want: list[int],
    generation: int,
    cache: BlockCache | None = None,
) -> Fetched:
    """The statement of :func:`read_round`; :func:`add_round` adds what it read. The
    lists' depths and frontiers move here, their ``seg_read`` there.

    Blocks in ``cache`` under ``generation`` are taken from it: the statement asks for
    the blocks past each term's cached run (and still checks the generation). A first
    round whose blocks are all cached and whose tails came with the terms
    (``Terms.tails``, same generation: one snapshot) sends no statement."""
    first = all(b is None for b in lists.blocks)
    seg: Fetched = {}
    last: dict[int, tuple[int, float]] = {}
    server = server_of(pg)
    lo = list(lists.depth)
    if cache is not None:
        for i, tid in enumerate(terms.ids):
            while lo[i] < want[i]:
                hit = cache.get((*server, generation, tid, lo[i]))
                if hit is None:
                    break
                lists.blocks[i] = hit.blocks
                got = seg.setdefault(i, ([], []))
                got[0].append(hit.row_ids)
                got[1].append(hit.impacts)
                lists.blocks_read += 1
                last[i] = (lo[i], hit.min_impact)
                lo[i] += 1
    tail_got = [0] * len(terms.ids)
    lists.tail_ids, lists.tail_val, lists.tail_term = [], [], []
    tails = terms.tails
    if first and tails is not None and _settled_by(tails, terms, lists, lo, want, generation):
        for i, tid in enumerate(terms.ids):
            ids, imps = tails.by_term.get(tid, (_NO_IDS, _NO_IMPS))
            _tail(lists, i, ids[: lists.tail_lim[i]], imps[: lists.tail_lim[i]], tail_got)
    else:
        _statement(pg, terms, lists, seg, last, lo, want, generation, cache, tail_got)
    for i in range(len(terms.ids)):
        if lists.blocks[i] is None and lists.depth[i] == 0:
            lists.blocks[i] = 0  # no segment blocks at all: the term came after the rebuild
        if i in last:
            lists.depth[i] = last[i][0] + 1
        if lists.seg_done(i):
            lists.seg_front[i] = 0.0
        elif i in last:
            lists.seg_front[i] = last[i][1]
        lists.tail_done[i] = tail_got[i] < lists.tail_lim[i]
        if lists.tail_done[i]:
            lists.tail_front[i] = 0.0
    return seg


_NO_IDS = np.empty(0, dtype=np.int64)
_NO_IMPS = np.empty(0)


def _settled_by(
    tails: FirstTails, terms: Terms, lists: Lists, lo: list[int], want: list[int], gen: int
) -> bool:
    """Whether the cached blocks and the tails read with the terms are the whole round:
    every wanted block cached (or past the term's last), every tail read deep enough."""
    if tails.generation != gen:
        return False
    for i, tid in enumerate(terms.ids):
        n = lists.blocks[i]
        if lo[i] < want[i] and (n is None or lo[i] < n):
            return False
        got = len(tails.by_term.get(tid, (_NO_IDS, _NO_IMPS))[0])
        if got >= tails.lim and lists.tail_lim[i] > tails.lim:
            return False  # a rare term read whole may have more tail than was read
    return True


def _tail(lists: Lists, i: int, ids: np.ndarray, imps: np.ndarray, tail_got: list[int]) -> None:
    """Term ``i``'s tail postings read this round (strongest first)."""
    if not len(ids):
        return
    lists.tail_ids.append(ids)
    lists.tail_val.append(imps * lists.weights[i])
    lists.tail_term.append(i)
    tail_got[i] = len(ids)
    lists.tail_front[i] = float(imps[-1])


def _statement(
    pg: psycopg.Connection,
    terms: Terms,
    lists: Lists,
    seg: Fetched,
    last: dict[int, tuple[int, float]],
    lo: list[int],
    want: list[int],
    generation: int,
    cache: BlockCache | None,
    tail_got: list[int],
) -> None:
    """ROUND_SQL for the blocks [lo, want) and the tails, adding to ``seg`` and ``last``."""
    index = {t: i for i, t in enumerate(terms.ids)}
    server = server_of(pg)
    params = {"tids": terms.ids, "lo": lo, "hi": want, "tlim": lists.tail_lim}
    fresh: list[tuple[Key, Block]] = []
    confirmed = False
    with pg.cursor(binary=True) as cur:
        cur.execute(ROUND_SQL, params)
        for kind, tid, block, n, min_imp, row_ids, imps, t_ids, t_imps in cur:
            if kind == 2:
                if int(n) != generation:
                    raise SegmentChanged
                confirmed = True
                continue
            i = index[int(tid)]
            if kind == 0:
                lists.blocks[i] = int(n)
                ids, vals = np.frombuffer(row_ids, dtype="<i8"), np.frombuffer(imps, dtype="<f4")
                got = seg.setdefault(i, ([], []))
                got[0].append(ids)
                got[1].append(vals)
                lists.blocks_read += 1
                if int(block) >= last.get(i, (-1, 0.0))[0]:
                    last[i] = (int(block), float(min_imp))
                if cache is not None:
                    key = (*server, generation, int(tid), int(block))
                    fresh.append((key, Block(ids, vals, float(min_imp), int(n))))
            elif t_ids is not None:
                ids = np.asarray(t_ids, dtype=np.int64)
                _tail(lists, i, ids, np.asarray(t_imps, dtype=np.float64), tail_got)
    if cache is not None and confirmed:  # the rows arrive in any order: kept once all did
        for key, got_block in fresh:
            cache.put(key, got_block)


def add_round(seg: Fetched, lists: Lists, sums: Sums | SparseSums) -> None:
    """Add the blocks :func:`fetch_round` read into ``sums``."""
    for i, (id_parts, imp_parts) in seg.items():
        # One term's blocks hold each row once: added in one step.
        ids = np.concatenate(id_parts)
        vals = np.multiply(np.concatenate(imp_parts), lists.weights[i], dtype=np.float64)
        sums.add_segment(ids, vals, i)
        lists.seg_read += len(ids)


def restarting(
    conn: Connection, generation: int, attempt: Callable[[psycopg.Connection, int], KeywordRun]
) -> KeywordRun:
    """``attempt(pg, generation)``, run again on the new generation when a rebuild
    committed between two of its rounds (RESTARTS times at most, then no rows)."""
    pg = driver_of(conn)
    for _ in range(RESTARTS):
        try:
            return attempt(pg, generation)
        except SegmentChanged:
            generation = int(conn.execute(GENERATION_SQL).scalar_one())
    return KeywordRun(KeywordPlan.blocks, [], proven=False)
