"""Keyword top-k over the segment's packed blocks and the tail, scored in numpy (plan ``blocks``).

The same threshold algorithm as the postings plan (core/memory/bm25.py), with the
per-posting work moved out of SQL. Each round is one statement, so blocks and tail are
read under one snapshot: per query term the next blocks of its segment list
(core/memory/keyword_segment.py, strongest first) and the strongest ``tlim`` postings of
its tail in ``search_postings``. The segment's postings are added into per-query sums
(core/memory/bm25_sums.py) as they arrive; the tail, small, is summed again each round
from what it returned. A chunk is either in the
segment or in the tail, so each store has its own frontiers: a segment chunk not read
for term t has at most ``idf(t) · (min impact of t's last block read)`` from it (0 once
the list is read whole), a tail chunk at most the last tail impact read; a chunk read
for no term at most the larger of the two sums. The best candidates by bound are
rescored exactly from their tsvector under the filter (SCORE_EXPR, as every plan), so
the scores are bit-identical to the exact scan's; when the k-th exact score reaches
every bound left the top-k is proven, otherwise the lists holding most of the bound are
read GROWTH times deeper and more candidates are rescored, within the budget
(AGENTRY_KEYWORD_BUDGET, or hybrid's). A query that spends it settles: the rows with the
best known parts are rescored and the best returned, proven only if the bounds left
allow it. A rebuild between two rounds (the generation moved) starts the query over.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Connection, text

from core.memory.bm25_settle import (
    SETTLE,
    best,
    joined_bounds,
    known_bounds,
    kths,
    rescore,
    settle,
    theta_of,
)
from core.memory.bm25_sums import SparseSums, Sums, query_sums, sparse_bounds
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
# The segment a query restarts on after a rebuild committed between two of its rounds.
GENERATION_SQL = text("SELECT segment_generation FROM search_keyword_stats WHERE id = 1")
# Candidates are rescored to (id, score) only: the columns of a row (content, metadata)
# cost more to send and decode than its score, and only the top `limit` are returned.
RESCORE_SQL = (
    f"WITH {WEIGHTS_CTE} SELECT s.id, {SCORE_EXPR} AS score FROM search_index s "
    "WHERE s.id = ANY(CAST(:ids AS bigint[])) AND {where}"
)
ROWS_SQL = text(
    f"SELECT {ROW_COLUMNS}, x.score FROM unnest(CAST(:ids AS bigint[]), "
    "CAST(:scores AS float8[])) WITH ORDINALITY AS x(id, score, pos) "
    "JOIN search_index s ON s.id = x.id ORDER BY x.pos"
)
# Rare terms are read whole in the first round up to EXHAUST postings in all; the others
# start with FIRST_BLOCKS blocks and TAIL0 tail postings; each later round reads GROWTH
# times deeper.
EXHAUST = 65_536
FIRST_BLOCKS = 1
TAIL0 = 256
GROWTH = 4
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


def first_lists(
    terms: Terms, limit: int, budget: int, *, spend: bool = False
) -> tuple[Lists, list[int]]:
    """Lists before the first round, and the segment blocks it reads per term
    (``spend``: all of ``budget``, for a query read once, core/memory/bm25_ranks.py)."""
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
) -> None:
    """Read segment blocks [depth, want) and the tail's first tail_lim postings per term."""
    index = {t: i for i, t in enumerate(terms.ids)}
    params = {"tids": terms.ids, "lo": lists.depth, "hi": want, "tlim": lists.tail_lim}
    last: dict[int, tuple[int, float]] = {}
    tail_got = [0] * len(terms.ids)
    lists.tail_ids, lists.tail_val, lists.tail_term = [], [], []
    seg: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
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
                got = seg.setdefault(i, ([], []))
                got[0].append(np.frombuffer(row_ids, dtype="<i8"))
                got[1].append(np.frombuffer(imps, dtype="<f4"))
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
    for i, (id_parts, imp_parts) in seg.items():
        # One term's blocks hold each row once: added in one step.
        ids = np.concatenate(id_parts)
        vals = np.multiply(np.concatenate(imp_parts), lists.weights[i], dtype=np.float64)
        sums.add_segment(ids, vals, i)
        lists.seg_read += len(ids)
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
    max_row_id: int,
) -> KeywordRun:
    """Threshold-style top-k over blocks and tail; see the module docstring."""

    def attempt(pg: psycopg.Connection, gen: int) -> KeywordRun:
        with query_sums(max_row_id) as sums:
            run = _run(
                conn, pg, terms, where, params, sums,
                limit=limit, budget=budget, gen=gen, filtered=filtered,
            )  # fmt: skip
        pairs: list[tuple[int, float]] = run.rows  # _run leaves (id, score) pairs
        if pairs:
            ids, scores = zip(*pairs, strict=True)
            found = conn.execute(ROWS_SQL, {"ids": list(ids), "scores": list(scores)})
            run.rows = list(found)
        return run

    return restarting(conn, generation, attempt)


def restarting(
    conn: Connection, generation: int, attempt: Callable[[psycopg.Connection, int], KeywordRun]
) -> KeywordRun:
    """``attempt(pg, generation)``, run again on the new generation when a rebuild
    committed between two of its rounds (RESTARTS times at most, then no rows)."""
    pg = conn.connection.driver_connection
    assert isinstance(pg, psycopg.Connection)
    for _ in range(RESTARTS):
        try:
            return attempt(pg, generation)
        except SegmentChanged:
            generation = int(conn.execute(GENERATION_SQL).scalar_one())
    return KeywordRun(KeywordPlan.blocks, [], proven=False)


def _run(
    conn: Connection,
    pg: psycopg.Connection,
    terms: Terms,
    where: str,
    params: dict[str, Any],
    sums: Sums | SparseSums,
    *,
    limit: int,
    budget: int,
    gen: int,
    filtered: bool,
) -> KeywordRun:
    lists, want = first_lists(terms, limit, budget)
    rescore_sql = text(RESCORE_SQL.format(where=where))
    scored: dict[int, float | None] = {}  # rescored; None: deleted or outside the filter
    cap = max(4 * limit, 64)
    settle_rows = max(int(SETTLE * limit), limit + 16)
    rounds = 0
    n = len(terms.ids)
    while True:
        rounds += 1
        read_round(pg, terms, lists, sums, want, gen)
        seg_f = lists.weights * np.asarray(lists.seg_front)
        tail_f = lists.weights * np.asarray(lists.tail_front)
        t_rows, t_known, t_ub = sparse_bounds(
            lists.tail_ids, lists.tail_val, lists.tail_term, tail_f
        )
        if len(t_rows):
            keep = sums.fresh(t_rows)
            t_rows, t_known, t_ub = t_rows[keep], t_known[keep], t_ub[keep]
        s_rows, s_known = sums.fresh_rows(seg_f)
        known_all = np.concatenate([s_known, t_known])
        ub0 = max(float(seg_f.sum()), float(tail_f.sum()))
        if lists.read() >= budget and not all(lists.exhausted(i) for i in range(n)):
            # Nothing more may be read: settle on the best known parts, without the
            # bounds of every candidate (only those that could beat the result).
            return settle(
                conn, rescore_sql, params, sums, scored,
                np.concatenate([s_rows, t_rows]), known_all,
                partial(joined_bounds, sums, t_ub),
                KeywordRun(KeywordPlan.blocks, [], rounds, lists.read(), lists.blocks_read),
                ub0=ub0, limit=limit, take=settle_rows,
            )  # fmt: skip
        theta = theta_of(scored, limit)
        kth = kths(known_all, limit, min(cap, len(known_all)))
        if not filtered and len(known_all) >= limit:
            # Without a filter the k-th best known part is a floor under the k-th exact
            # score (unless deleted rows are among them: then the check below fails and
            # the next round rescores more), so fewer candidates need rescoring.
            theta = max(theta, kth[limit] - TIE)
        # Exact bounds are needed where they can reach theta; without one, for the `cap`
        # best (a bound is at least the known part: those are among the cap best known).
        floor = theta if theta > -math.inf else kth[min(cap, len(known_all))]
        s_ub = sums.bounds(floor)
        rows_all = np.concatenate([s_rows, t_rows])
        ub_all = np.concatenate([s_ub, t_ub])
        # Rescored: the best bounds, only those that can still reach the k-th score.
        live = int((ub_all >= theta).sum()) if theta > -math.inf else len(ub_all)
        take = min(max(live, min(limit, len(ub_all))), cap)
        if take > live and theta > -math.inf:
            # Fewer than `limit` can reach theta: the best bounds below it are wanted too.
            s_ub = sums.bounds(kths(known_all, take)[take])
            ub_all = np.concatenate([s_ub, t_ub])
        exhausted = all(lists.exhausted(i) for i in range(n))
        open_lists = not exhausted and lists.read() < budget
        by = ub_all
        if live > cap and open_lists and (scored or not filtered):
            # Too many candidates for one round of rescoring (tens of microseconds each):
            # read deeper first, which tightens their bounds for a fraction of that. The
            # best known parts are rescored once, for an exact k-th score that rules
            # candidates out for good.
            take = 0 if len(scored) >= limit else min(limit, len(ub_all))
            by = known_all
        rest = np.ones(len(ub_all), dtype=bool)
        if take:
            top = np.argpartition(-by, take - 1)[:take]
            rest[top] = False
            rescore(conn, rescore_sql, params, sums, scored, rows_all[top])
        theta = theta_of(scored, limit)
        if theta > -math.inf:
            sums.rule_out(s_ub >= theta)
        next_ub = float(ub_all[rest].max()) if rest.any() else -math.inf
        read = lists.read()
        result = best(scored, limit)
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
            left = ub_all[rest]
            return settle(
                conn, rescore_sql, params, sums, scored, rows_all[rest], known_all[rest],
                partial(known_bounds, left), run, ub0=ub0, limit=limit, take=settle_rows,
            )  # fmt: skip
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
