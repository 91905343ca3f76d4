"""Keyword top-k over the segment's packed blocks and the tail, scored in numpy (plan ``blocks``).

The same threshold algorithm as the postings plan (core/memory/bm25.py), with the
per-posting work moved out of SQL. Each round is one statement (core/memory/bm25_reads.py),
so blocks and tail are read under one snapshot: per query term the next blocks of its
segment list (core/memory/keyword_segment.py, strongest first) and the strongest
``tlim`` postings of its tail in ``search_postings``. The segment's postings are added
into per-query sums (core/memory/bm25_sums.py) as they arrive; the tail, small, is
summed again each round from what it returned. A chunk is either in the segment or in
the tail, so each store has its own frontiers: a segment chunk not read
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
from functools import partial
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import Connection, text

from core.memory.block_cache import BlockCache
from core.memory.bm25_reads import first_lists, read_round, restarting
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

GROWTH = 4


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
    cache: BlockCache | None = None,
) -> KeywordRun:
    """Threshold-style top-k over blocks and tail; see the module docstring (``cache``:
    decoded blocks, core/memory/block_cache.py)."""

    def attempt(pg: psycopg.Connection, gen: int) -> KeywordRun:
        with query_sums(max_row_id) as sums:
            run = _run(
                conn, pg, terms, where, params, sums,
                limit=limit, budget=budget, gen=gen, filtered=filtered, cache=cache,
            )  # fmt: skip
        pairs: list[tuple[int, float]] = run.rows  # _run leaves (id, score) pairs
        if pairs:
            ids, scores = zip(*pairs, strict=True)
            found = conn.execute(ROWS_SQL, {"ids": list(ids), "scores": list(scores)})
            run.rows = list(found)
        return run

    return restarting(conn, generation, attempt)


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
    cache: BlockCache | None,
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
        read_round(pg, terms, lists, sums, want, gen, cache)
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
