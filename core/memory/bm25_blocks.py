"""Keyword top-k over the segment's packed blocks and the tail, scored in numpy (plan ``blocks``).

The same threshold algorithm as the postings plan (core/memory/bm25.py), with the
per-posting work moved out of SQL. Each round is one statement, so blocks and tail are
read under one snapshot: per query term the next blocks of its segment list
(core/memory/keyword_segment.py, strongest first) and the strongest ``tlim`` postings of
its tail in ``search_postings``. numpy adds them up per chunk. A chunk is either in the
segment or in the tail, so each store has its own frontiers: a segment chunk not read
for term t has at most ``idf(t) · (min impact of t's last block read)`` from it (0 once
the list is read whole), a tail chunk at most the last tail impact read; a chunk read
for no term at most the larger of the two sums. The best candidates by bound are
rescored exactly from their tsvector under the filter (SCORE_EXPR, as every plan), so
the scores are bit-identical to the exact scan's; when the k-th exact score reaches
every bound left the top-k is proven, otherwise the lists holding most of the bound are
read GROWTH times deeper and more candidates are rescored, within
AGENTRY_KEYWORD_BUDGET postings. A rebuild between two rounds (the generation moved)
starts the query over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Connection, text

from core.memory.bm25_types import (
    ROW_COLUMNS,
    SCORE_EXPR,
    TIE,
    WEIGHTS_CTE,
    KeywordPlan,
    KeywordRun,
    Terms,
)
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
RESCORE_SQL = (
    f"WITH {WEIGHTS_CTE} SELECT {ROW_COLUMNS}, {SCORE_EXPR} AS score FROM search_index s "
    "WHERE s.id = ANY(CAST(:ids AS bigint[])) AND {where}"
)
# Rare terms are read whole in the first round up to EXHAUST postings in all; the others
# start with FIRST_BLOCKS blocks and TAIL0 tail postings; each later round reads GROWTH
# times deeper.
EXHAUST = 65_536
FIRST_BLOCKS = 1
TAIL0 = 256
GROWTH = 4
DENSE_SPAN = 1 << 22  # row-id spans up to this are summed by bincount, wider by unique
RESTARTS = 3


class SegmentChanged(Exception):
    """A rebuild committed between two rounds of one query."""


@dataclass
class _Lists:
    """What has been read so far, per query term."""

    weights: np.ndarray
    depth: list[int]  # segment blocks read
    blocks: list[int | None]  # segment blocks in all (None: not seen yet)
    seg_front: list[float]
    tail_lim: list[int]
    tail_front: list[float]
    tail_done: list[bool]
    seg_ids: list[np.ndarray] = field(default_factory=list)
    seg_val: list[np.ndarray] = field(default_factory=list)
    seg_term: list[int] = field(default_factory=list)
    tail_ids: list[np.ndarray] = field(default_factory=list)
    tail_val: list[np.ndarray] = field(default_factory=list)
    tail_term: list[int] = field(default_factory=list)
    blocks_read: int = 0

    def seg_done(self, i: int) -> bool:
        n = self.blocks[i]
        return n is not None and self.depth[i] >= n

    def exhausted(self, i: int) -> bool:
        return self.seg_done(i) and self.tail_done[i]

    def read(self) -> int:
        return sum(len(a) for a in self.seg_ids) + sum(len(a) for a in self.tail_ids)


def _first(terms: Terms, limit: int, budget: int) -> tuple[_Lists, list[int]]:
    """Lists before the first round, and the segment blocks it reads per term."""
    n = len(terms.ids)
    want = [FIRST_BLOCKS] * n
    tail = [max(4 * limit, TAIL0)] * n
    room = min(EXHAUST, budget)
    for i in sorted(range(n), key=lambda i: terms.dfs[i]):
        if terms.dfs[i] > room:
            break
        want[i] = max(want[i], -(-terms.dfs[i] // BLOCK))
        tail[i] = max(tail[i], terms.dfs[i] + 1)  # one more than exist: seen to be exhausted
        room -= terms.dfs[i]
    lists = _Lists(
        weights=np.asarray(terms.weights, dtype=np.float64),
        depth=[0] * n,
        blocks=[None] * n,
        seg_front=[math.inf] * n,
        tail_lim=tail,
        tail_front=[math.inf] * n,
        tail_done=[False] * n,
    )
    return lists, want


def _read_round(
    pg: psycopg.Connection, terms: Terms, lists: _Lists, want: list[int], generation: int
) -> None:
    """Read segment blocks [depth, want) and the tail's first tail_lim postings per term."""
    index = {t: i for i, t in enumerate(terms.ids)}
    params = {"tids": terms.ids, "lo": lists.depth, "hi": want, "tlim": lists.tail_lim}
    last: dict[int, tuple[int, float]] = {}
    tail_got = [0] * len(terms.ids)
    lists.tail_ids, lists.tail_val, lists.tail_term = [], [], []
    with pg.cursor(binary=True) as cur:
        cur.execute(ROUND_SQL, params)
        for kind, tid, block, n, min_imp, row_ids, imps, t_ids, t_imps in cur:
            if kind == 2:
                if int(n) != generation:
                    raise SegmentChanged
                continue
            i = index[int(tid)]
            if kind == 0:
                lists.blocks[i] = int(n)
                ids = np.frombuffer(row_ids, dtype="<i8")
                val = np.frombuffer(imps, dtype="<f4").astype(np.float64) * lists.weights[i]
                lists.seg_ids.append(ids)
                lists.seg_val.append(val)
                lists.seg_term.append(i)
                lists.blocks_read += 1
                if int(block) >= last.get(i, (-1, 0.0))[0]:
                    last[i] = (int(block), float(min_imp))
            elif t_ids is not None:
                ids = np.asarray(t_ids, dtype=np.int64)
                val = np.asarray(t_imps, dtype=np.float64) * lists.weights[i]
                lists.tail_ids.append(ids)
                lists.tail_val.append(val)
                lists.tail_term.append(i)
                tail_got[i] = len(ids)
                lists.tail_front[i] = float(t_imps[-1]) if t_imps else 0.0
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


def _bounds(
    ids: list[np.ndarray], vals: list[np.ndarray], term: list[int], fronts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per chunk read: row id, the known part of its score, and its bound (the known
    part plus the frontiers of the terms it was not read for)."""
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    all_ids = np.concatenate(ids)
    known_v = np.concatenate(vals)
    seen_v = np.repeat(fronts[term], [len(a) for a in ids])  # idf · frontier per term
    lo = int(all_ids.min())
    span = int(all_ids.max()) - lo + 1
    if span <= max(DENSE_SPAN, 8 * len(all_ids)):
        idx = all_ids - lo
        known = np.bincount(idx, known_v, minlength=span)
        seen = np.bincount(idx, seen_v, minlength=span)
        nz = np.flatnonzero(known)  # every weight is > 0: read once, nonzero
        rows, known, seen = nz + lo, known[nz], seen[nz]
    else:
        rows, inv = np.unique(all_ids, return_inverse=True)
        known = np.bincount(inv, known_v)
        seen = np.bincount(inv, seen_v)
    return rows, known, known + (float(fronts.sum()) - seen)


def block_plan(
    conn: Connection,
    terms: Terms,
    where: str,
    params: dict[str, Any],
    *,
    limit: int,
    budget: int,
    generation: int,
    filtered: bool,
) -> KeywordRun:
    """Threshold-style top-k over blocks and tail; see the module docstring."""
    pg = conn.connection.driver_connection
    assert isinstance(pg, psycopg.Connection)
    for _ in range(RESTARTS):
        try:
            return _run(
                conn, pg, terms, where, params,
                limit=limit, budget=budget, gen=generation, filtered=filtered,
            )  # fmt: skip
        except SegmentChanged:
            generation = int(
                conn.execute(
                    text("SELECT segment_generation FROM search_keyword_stats WHERE id = 1")
                ).scalar_one()
            )
    return KeywordRun(KeywordPlan.blocks, [], proven=False)


def _run(
    conn: Connection,
    pg: psycopg.Connection,
    terms: Terms,
    where: str,
    params: dict[str, Any],
    *,
    limit: int,
    budget: int,
    gen: int,
    filtered: bool,
) -> KeywordRun:
    lists, want = _first(terms, limit, budget)
    rescore_sql = text(RESCORE_SQL.format(where=where))
    scored: dict[int, Any] = {}  # rescored rows; None: deleted or outside the filter
    cap = max(4 * limit, 64)
    rounds = 0
    n = len(terms.ids)
    while True:
        rounds += 1
        _read_round(pg, terms, lists, want, gen)
        seg_f = lists.weights * np.asarray(lists.seg_front)
        tail_f = lists.weights * np.asarray(lists.tail_front)
        s_rows, s_known, s_ub = _bounds(lists.seg_ids, lists.seg_val, lists.seg_term, seg_f)
        t_rows, t_known, t_ub = _bounds(lists.tail_ids, lists.tail_val, lists.tail_term, tail_f)
        rows_all = np.concatenate([s_rows, t_rows])
        ub_all = np.concatenate([s_ub, t_ub])
        known_all = np.concatenate([s_known, t_known])
        ub0 = max(float(seg_f.sum()), float(tail_f.sum()))
        if scored:
            fresh = ~np.isin(rows_all, np.fromiter(scored, dtype=np.int64, count=len(scored)))
            rows_all, ub_all, known_all = rows_all[fresh], ub_all[fresh], known_all[fresh]
        theta = _theta(scored, limit)
        if not filtered and len(known_all) >= limit:
            # Without a filter the k-th best known part is a floor under the k-th exact
            # score (unless deleted rows are among them: then the check below fails and
            # the next round rescores more), so fewer candidates need rescoring.
            kth = float(np.partition(known_all, len(known_all) - limit)[len(known_all) - limit])
            theta = max(theta, kth - TIE)
        # Rescored: the best bounds, only those that can still reach the k-th score.
        live = int((ub_all >= theta).sum()) if theta > -math.inf else len(ub_all)
        take = min(max(live, min(limit, len(ub_all))), cap)
        open_lists = not all(lists.exhausted(i) for i in range(n)) and lists.read() < budget
        if live > cap and open_lists and (scored or not filtered):
            # Too many candidates for one round of rescoring (tens of microseconds each):
            # read deeper first, which tightens their bounds for a fraction of that.
            take = 0
        rest = np.ones(len(ub_all), dtype=bool)
        if take:
            top = np.argpartition(-ub_all, take - 1)[:take] if take < len(ub_all) else None
            picked = (rows_all if top is None else rows_all[top]).tolist()
            if top is not None:
                rest[top] = False
            else:
                rest[:] = False
            found = conn.execute(rescore_sql, {**params, "ids": picked})
            scored.update(dict.fromkeys(picked))
            scored.update({int(r.id): r for r in found})
        theta = _theta(scored, limit)
        next_ub = float(ub_all[rest].max()) if rest.any() else -math.inf
        read = lists.read()
        result = _best(scored, limit)
        done = all(lists.exhausted(i) for i in range(n))

        run = KeywordRun(
            KeywordPlan.blocks, result, rounds, read, lists.blocks_read, rescored=len(scored)
        )
        if ub0 < theta and next_ub < theta:
            return run
        if done and next_ub == -math.inf:
            return run  # every posting of every term read and rescored
        run.proven = False
        if read >= budget:
            return run
        want = list(lists.depth)
        deeper = False
        waiting = int((ub_all[rest] >= theta).sum())
        # Rescoring a chunk costs PostgreSQL tens of microseconds, reading a posting here
        # a fraction of one: while more candidates wait than one round rescores, deeper
        # lists (lower frontiers, so tighter bounds) come first.
        if (ub0 >= theta or waiting > cap) and not done:
            # The largest contributions to the bound are read deeper first.
            room = budget - read
            for i in sorted(range(n), key=lambda i: -max(seg_f[i], tail_f[i])):
                if room <= 0:
                    break
                seg_open, tail_open = not lists.seg_done(i), not lists.tail_done[i]
                if seg_open and (seg_f[i] >= tail_f[i] or not tail_open):
                    more = min(max(1, lists.depth[i] * (GROWTH - 1)), max(1, room // BLOCK))
                    want[i] = lists.depth[i] + more
                    room -= more * BLOCK
                    deeper = True
                elif tail_open:
                    grow = min(lists.tail_lim[i] * (GROWTH - 1), room)
                    lists.tail_lim[i] += grow
                    room -= grow
                    deeper = True
        if next_ub >= theta and not (deeper and waiting > cap):
            cap *= GROWTH
            deeper = True
        if not deeper:
            return run


def _best(scored: dict[int, Any], limit: int) -> list[Any]:
    rows = [r for r in scored.values() if r is not None]
    rows.sort(key=lambda r: (-float(r.score), int(r.id)))
    return rows[:limit]


def _theta(scored: dict[int, Any], limit: int) -> float:
    """What a chunk must stay below to be left out: the k-th exact score, less the float
    noise between bounds and scores. A chunk that ties the k-th may have a lower id and
    come first in the exact order (score, then id), so ties are read and rescored too."""
    best = _best(scored, limit)
    return float(best[limit - 1].score) - TIE if len(best) >= limit else -math.inf
