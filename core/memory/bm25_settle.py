"""How the blocks plan ends a query: settling when the budget is spent, and the small
helpers over rescored rows it shares with the rounds (core/memory/bm25_blocks.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sqlalchemy import Connection

from core.memory.bm25_sums import SparseSums, Sums
from core.memory.bm25_types import TIE, KeywordRun

__all__ = [
    "SETTLE", "best", "joined_bounds", "known_bounds", "kths", "rescore", "settle", "theta_of",
]  # fmt: skip

# Rows rescored per row wanted when the budget is spent before the top-k is proven.
SETTLE = 3
SETTLE_MAX = 128  # rows rescored per row wanted at most, when a filter lets few pass
GROWTH = 4  # each further settling batch, under a filter, this many times the last


def joined_bounds(sums: Sums | SparseSums, tail_ub: np.ndarray, theta: float) -> np.ndarray:
    """Bounds of the segment rows last returned by ``sums``, then the tail's: computed
    only when settling needs them, exact where they reach ``theta``."""
    return np.concatenate([sums.bounds(theta), tail_ub])


def known_bounds(ub: np.ndarray, theta: float) -> np.ndarray:
    """Bounds already computed in the round (exact where they reach any later theta)."""
    return ub


def rescore(
    conn: Connection,
    rescore_sql: Any,
    params: dict[str, Any],
    sums: Sums | SparseSums,
    scored: dict[int, float | None],
    picked: np.ndarray,
) -> None:
    """Score ``picked`` exactly under the filter into ``scored`` (None: deleted or
    outside the filter) and mark them, so no round offers them again."""
    ids = picked.tolist()
    found = conn.execute(rescore_sql, {**params, "ids": ids})
    sums.mark_rescored(picked)
    scored.update(dict.fromkeys(ids))
    scored.update({int(i): float(v) for i, v in found})


def settle(
    conn: Connection,
    rescore_sql: Any,
    params: dict[str, Any],
    sums: Sums | SparseSums,
    scored: dict[int, float | None],
    rows: np.ndarray,
    known: np.ndarray,
    bounds: Callable[[float], np.ndarray],
    run: KeywordRun,
    *,
    ub0: float,
    limit: int,
    take: int,
) -> KeywordRun:
    """The budget is spent: the ``take`` rows with the best known parts are rescored
    (every list was read strongest first, so the known part is most of the score of the
    rows that matter), and the best returned — proven when the bounds left allow it.

    ``bounds(theta)``: bounds of ``rows``, exact at least where they reach ``theta``.
    """
    rest = np.ones(len(rows), dtype=bool)
    spent = 0
    while True:
        take = min(int(rest.sum()), take)
        if not take:
            break
        left = np.where(rest, -known, np.inf)
        top = np.argpartition(left, take - 1)[:take]  # the best known parts left
        rest[top] = False
        rescore(conn, rescore_sql, params, sums, scored, rows[top])
        spent += take
        # Under a filter most candidates may not pass it: more are rescored (GROWTH
        # times as many each time) until `limit` do, rather than a full exact scan.
        if len(best(scored, limit)) >= limit or spent >= SETTLE_MAX * limit:
            break
        take *= GROWTH
    theta = theta_of(scored, limit)
    run.rows = best(scored, limit)
    run.rescored = len(scored)
    run.proven = False
    if ub0 < theta:
        ub = bounds(theta)[rest]
        run.proven = not len(ub) or float(ub.max()) < theta
    return run


def kths(values: np.ndarray, *ks: int) -> dict[int, float]:
    """The k-th largest of ``values`` for each k (-inf when there are fewer), in one pass."""
    n = len(values)
    valid = sorted({n - k for k in ks if 0 < k <= n})
    part = np.partition(values, valid) if valid else values
    return {k: float(part[n - k]) if 0 < k <= n else -math.inf for k in ks}


def best(scored: dict[int, float | None], limit: int) -> list[tuple[int, float]]:
    """The ``limit`` best (id, score) rescored, in the exact scan's order."""
    rows = [(i, v) for i, v in scored.items() if v is not None]
    rows.sort(key=lambda r: (-r[1], r[0]))
    return rows[:limit]


def theta_of(scored: dict[int, float | None], limit: int) -> float:
    """What a chunk must stay below to be left out: the k-th exact score, less the float
    noise between bounds and scores. A chunk that ties the k-th may have a lower id and
    come first in the exact order (score, then id), so ties are read and rescored too."""
    top = best(scored, limit)
    return top[limit - 1][1] - TIE if len(top) >= limit else -math.inf
