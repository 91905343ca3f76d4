"""How a vector query is run so that a filtered search never comes back short.

HNSW filters *after* the graph walk: with ``ef_search`` = 40 and a filter matching
1% of rows, a plain index scan finds about 0.4 matching rows. The plan depends on
the pgvector version and on how many rows the filter matches:

* ``exact``      — the filter matches at most AGENTRY_SEARCH_EXACT_THRESHOLD rows:
  materialize them (btree/GIN on the filter columns) and sort by distance. Exact,
  and fast for small sets.
* ``iterative``  — pgvector >= 0.8 and a large matching set: ``hnsw.iterative_scan =
  relaxed_order`` keeps walking the graph until enough rows pass the filter; the
  results are re-sorted by distance.
* ``overfetch``  — pgvector < 0.8 and a large matching set: raise ``hnsw.ef_search``
  in proportion to 1/selectivity (cap 1000) and retry with a larger one if short.
* ``hnsw``       — no filter (admins): a plain HNSW scan with ``ef_search >= k``.

Every approximate plan that still returns fewer rows than exist falls back to
``exact`` (core/memory/search.py), so the count is always complete.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from core.db.extensions import supports_iterative_scan

MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
ROW_COLUMNS = "id, entity_type, entity_id, chunk, content, metadata, created_at"
SNIPPET_CHARS = 300  # of a hit's content shown (core/memory/search.py)
# What hybrid's fusion needs of a row (core/memory/search.py), for its concurrent halves:
# they see two snapshots, so the few rows returned are read once after fusing.
KEY_COLUMNS = "id, entity_type, entity_id, chunk"
# Hybrid's halves on one connection: every row with what a hit shows, the snippet cut on
# the server. Reading them after fusing cost one more statement than these columns do.
HIT_COLUMNS = (
    f"id, entity_type, entity_id, chunk, left(content, {SNIPPET_CHARS}) AS content, "
    "metadata, created_at"
)


class PlanKind(StrEnum):
    hnsw = "hnsw"
    exact = "exact"
    iterative = "iterative"
    overfetch = "overfetch"


@dataclass(frozen=True)
class VectorPlan:
    kind: PlanKind
    ef_search: int

    def settings_sql(self) -> list[str]:
        """``SET LOCAL`` statements to run in the query's transaction before it."""
        if self.kind is PlanKind.exact:
            return []
        stmts = [f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}"]
        if self.kind is PlanKind.iterative:
            stmts.append("SET LOCAL hnsw.iterative_scan = relaxed_order")
        return stmts

    def query_sql(self, where: str, kind: str = "vector", columns: str = ROW_COLUMNS) -> str:
        """The query; binds ``:q`` (vector text) and ``:limit`` plus the filter's params.

        ``columns``: :data:`ROW_COLUMNS`, or :data:`HIT_COLUMNS` / :data:`KEY_COLUMNS`
        for hybrid's half.

        ``kind`` is the column's type (AGENTRY_VECTOR_TYPE): the query vector is cast to
        it, so the distance operator is the one the HNSW index's operator class serves.
        """
        if kind not in ("vector", "halfvec"):
            raise ValueError(f"unknown vector type {kind!r}")
        cols = f"{columns}, embedding <=> CAST(:q AS {kind}) AS distance"
        if self.kind is PlanKind.exact:
            # MATERIALIZED keeps the planner from walking the HNSW index: the filter
            # is applied first (its own indexes), then every candidate is scored.
            return (
                f"WITH candidates AS MATERIALIZED (SELECT {cols} FROM search_index "
                f"WHERE embedding IS NOT NULL AND {where}) "
                "SELECT * FROM candidates ORDER BY distance, id LIMIT :limit"
            )
        scan = (
            f"SELECT {cols} FROM search_index WHERE embedding IS NOT NULL AND {where} "
            f"ORDER BY embedding <=> CAST(:q AS {kind}) LIMIT :limit"
        )
        if self.kind is PlanKind.iterative:
            # relaxed_order may return rows slightly out of order: sort them again. From
            # PostgreSQL 17 the planner takes the CTE's index order as given and drops a
            # plain ORDER BY distance; "+ 0" is pgvector's documented way to keep the sort.
            return (
                f"WITH scanned AS MATERIALIZED ({scan}) "
                "SELECT * FROM scanned ORDER BY distance + 0, id"
            )
        return scan


def choose_plan(
    *,
    version: tuple[int, ...] | None,
    filtered: bool,
    candidates: int,
    total: int,
    limit: int,
    ef_search: int,
    exact_threshold: int,
) -> VectorPlan:
    """Pick the plan for one vector query.

    Args:
        version: installed pgvector version.
        filtered: whether any filter (user, type, time, metadata) applies.
        candidates: rows matching the filter, counted up to ``exact_threshold + 1``.
        total: rows in the index (estimate is fine).
        limit: rows wanted.
        ef_search: the configured AGENTRY_HNSW_EF_SEARCH.
        exact_threshold: AGENTRY_SEARCH_EXACT_THRESHOLD.

    Returns:
        The plan.
    """
    base_ef = min(MAX_EF_SEARCH, max(ef_search, limit))
    if not filtered:
        return VectorPlan(PlanKind.hnsw, base_ef)
    if candidates <= exact_threshold or candidates <= limit:
        return VectorPlan(PlanKind.exact, 0)
    if version is not None and supports_iterative_scan(version):
        return VectorPlan(PlanKind.iterative, base_ef)
    selectivity = min(1.0, candidates / max(total, 1))
    # Twice the expected need, so a typical query is complete on the first try.
    wanted = math.ceil(2 * limit / selectivity)
    return VectorPlan(PlanKind.overfetch, min(MAX_EF_SEARCH, max(base_ef, wanted)))


def next_plan(plan: VectorPlan) -> VectorPlan:
    """The retry after a short result: a doubled ef_search, then an exact scan."""
    if plan.kind is PlanKind.exact or plan.ef_search >= MAX_EF_SEARCH:
        return VectorPlan(PlanKind.exact, 0)
    return VectorPlan(plan.kind, min(MAX_EF_SEARCH, plan.ef_search * 2))
