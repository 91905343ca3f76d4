"""A vector query under a filter, never short: planned once, then run plan by plan.

:class:`VectorQuery` holds what planning decided (core/memory/strategy.py) and moves to
the next plan when one comes back short; :func:`run_vector_query` runs it statement by
statement. Hybrid search sends its first attempt pipelined, without waiting for it
(:meth:`VectorQuery.send`, core/memory/hybrid.py), then :meth:`VectorQuery.settle` takes
its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, text

from config import Settings
from core.db.driver import driver_statement
from core.db.extensions import installed_version
from core.memory.filters import SearchFilter
from core.memory.indexer import vector_literal
from core.memory.strategy import (
    ROW_COLUMNS,
    PlanKind,
    VectorPlan,
    choose_plan,
    next_plan,
)

COUNT_SQL = "SELECT count(*) FROM (SELECT 1 FROM search_index WHERE {where} LIMIT :cap) s"
TOTAL_ESTIMATE_SQL = text(
    "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = 'search_index'::regclass"
)


@dataclass
class VectorRun:
    """What a vector query did (for tests, benchmarks and diagnostics)."""

    plans: list[VectorPlan]
    rows: list[Any]


_versions: dict[str, tuple[int, ...] | None] = {}


def _pgvector_version(conn: Connection) -> tuple[int, ...] | None:
    key = str(conn.engine.url)
    if key not in _versions:
        _versions[key] = installed_version(conn)
    return _versions[key]


@dataclass
class VectorQuery:
    """One vector query's plan so far; :meth:`plan` decides the first."""

    conn: Connection
    where: str
    params: dict[str, Any]
    limit: int
    force: PlanKind | None
    columns: str
    vector_type: str
    plan: VectorPlan
    candidates: int | None
    cap: int
    plans: list[VectorPlan] = field(default_factory=list)

    @classmethod
    def planned(
        cls,
        conn: Connection,
        vector: Any,
        flt: SearchFilter,
        *,
        limit: int,
        settings: Settings,
        force: PlanKind | None = None,
        columns: str = ROW_COLUMNS,
    ) -> VectorQuery:
        """The first plan: unfiltered (admin) queries go straight to the index (counting
        is only needed when its answer comes back short); filtered ones are planned by
        the size of what they match, which takes two statements here."""
        where, params = flt.where()
        cap = max(settings.search_exact_threshold, limit) + 1
        query = cls(
            conn, where, {**params, "q": vector_literal(vector), "limit": limit}, limit,
            force, columns, settings.vector_type, VectorPlan(PlanKind.exact, 0), None, cap,
        )  # fmt: skip
        total = 0
        if not flt.is_empty and force is None:
            total = int(conn.execute(TOTAL_ESTIMATE_SQL).scalar() or 0)
            query.candidates = query.count()
            total = max(total, query.candidates)
        if force is PlanKind.exact:
            return query
        if force is not None:
            query.plan = VectorPlan(force, min(1000, max(settings.hnsw_ef_search, limit)))
            return query
        query.plan = choose_plan(
            version=_pgvector_version(conn),
            filtered=not flt.is_empty,
            candidates=query.candidates if query.candidates is not None else cap,
            total=total,
            limit=limit,
            ef_search=settings.hnsw_ef_search,
            exact_threshold=settings.search_exact_threshold,
        )
        return query

    def count(self) -> int:
        sql = text(COUNT_SQL.format(where=self.where))
        return int(self.conn.execute(sql, {**self.params, "cap": self.cap}).scalar_one())

    def statements(self) -> tuple[list[str], str]:
        """The current plan's ``SET LOCAL`` statements and its query (binds ``params``)."""
        return self.plan.settings_sql(), self.plan.query_sql(
            self.where, self.vector_type, self.columns
        )

    def settle(self, rows: list[Any]) -> VectorRun | None:
        """The run, when ``rows`` (the current plan's) are the answer; otherwise None,
        with the next plan to run in place."""
        self.plans.append(self.plan)
        plan = self.plan
        if len(rows) >= self.limit or plan.kind is PlanKind.exact or self.force is not None:
            return VectorRun(self.plans, rows)
        if self.candidates is None:
            self.candidates = self.count()
        if len(rows) >= self.candidates:
            return VectorRun(self.plans, rows)
        self.plan = next_plan(plan)
        return None

    def send(self, pg: psycopg.Connection) -> psycopg.Cursor[Any]:
        """Send the current plan's statements on ``pg``, the psycopg connection under
        ``conn``; in pipeline mode they run while the caller goes on, and the cursor's
        rows (for :meth:`settle`) are fetched when asked for."""
        sets, sql = self.statements()
        for stmt in sets:
            pg.execute(stmt)
        cur = pg.cursor(row_factory=namedtuple_row)
        cur.execute(*driver_statement(self.conn, sql, self.params))
        return cur

    def run(self) -> VectorRun:
        """The rest of the query, statement by statement on its connection."""
        while True:
            sets, sql = self.statements()
            for stmt in sets:
                self.conn.execute(text(stmt))
            rows = list(self.conn.execute(text(sql), self.params))
            if (done := self.settle(rows)) is not None:
                return done


def run_vector_query(
    conn: Connection,
    vector: Any,
    flt: SearchFilter,
    *,
    limit: int,
    settings: Settings,
    force: PlanKind | None = None,
    columns: str = ROW_COLUMNS,
) -> VectorRun:
    """Nearest index rows (chunks) to ``vector`` under ``flt``; never short.

    Returns ``limit`` rows whenever at least that many matching rows have vectors:
    a short approximate result is retried with a larger ef_search and then exactly.

    Args:
        conn: a connection in a transaction (SET LOCAL applies to it).
        vector: the query vector.
        flt: the filter.
        limit: rows wanted.
        settings: ef_search and the exact-scan threshold.
        force: use this plan kind (benchmarks: ``hnsw`` vs ``exact``).
        columns: the row columns returned (HIT_COLUMNS, KEY_COLUMNS: hybrid's half).

    Returns:
        The plans tried and the rows (best first).
    """
    return VectorQuery.planned(
        conn, vector, flt, limit=limit, settings=settings, force=force, columns=columns
    ).run()
