"""Hybrid search: reciprocal rank fusion of the vector and keyword halves.

The keyword half ranks by the part of each BM25 score read within
AGENTRY_HYBRID_KEYWORD_BUDGET (core/memory/bm25_ranks.py) instead of proving scores; the
vector half is the vector search of core/memory/search.py at AGENTRY_HYBRID_DEPTH.

The halves share one connection and one transaction, and still overlap: while the
keyword half adds up the postings it read (a millisecond or two of numpy), the vector
half's statements run on the server, sent in psycopg's pipeline mode without waiting
(:class:`_VectorBeside`); the keyword half's probe of its best rows follows them in the
pipeline. When the keyword half takes a plan without that step (a small scope,
web-search syntax, a fallback), the vector half runs after it, as before. The vector
half returns its rows with the snippet, metadata and date (HIT_COLUMNS; the snippet is
cut on the server); the keyword half only for the ranks that can reach the top ``k``
without a vector rank (:func:`keyword_shown`: none at the default weights) and its
pending rows. A statement after fusing (:func:`_fill`) is needed only where that bound
does not hold: the vector half short of ``k`` documents, chunks of one document moving a
rank past it, a row embedded between the two halves' statements.

With AGENTRY_HYBRID_CONCURRENT the keyword half runs on a second connection, under
another snapshot: the halves then return key columns only, and the ``k`` hits are read
once after fusing, on the caller's connection (:func:`_fill`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

from config import Settings
from core.memory.filters import SearchFilter
from core.memory.search import Hit, fuse, keyword_hits, vector_documents, vector_search
from core.memory.strategy import HIT_COLUMNS, KEY_COLUMNS, SNIPPET_CHARS
from core.memory.vector_query import VectorQuery, VectorRun

# NULL while the transaction has written nothing (no transaction id assigned yet).
WRITES_SQL = text("SELECT pg_current_xact_id_if_assigned()")
FILL_SQL = text(
    "SELECT id, content, metadata, created_at FROM search_index "
    "WHERE id = ANY(CAST(:ids AS bigint[]))"
)
# Keyword halves of concurrent hybrid queries; each takes its own pooled connection.
_HALVES = ThreadPoolExecutor(max_workers=8, thread_name_prefix="agentry-hybrid")


def hybrid_hits(
    conn: Connection,
    query: str,
    vector: Any,
    flt: SearchFilter,
    *,
    k: int,
    settings: Settings,
    concurrent: bool | None = None,
) -> list[Hit]:
    """RRF of the vector and keyword top AGENTRY_HYBRID_DEPTH for an embedded query
    (what each half returns: the module docstring), the ``k`` best filled in.

    With AGENTRY_HYBRID_CONCURRENT (or ``concurrent``) the keyword half runs on a second
    pooled connection while the vector half runs on ``conn`` — only when the caller's
    transaction has written nothing, since the other connection could not see it.
    """
    depth = max(k, settings.hybrid_depth)

    def keyword_half(c: Connection, beside: _VectorBeside | None = None) -> list[Hit]:
        # One chunk per candidate, as the vector side: ranks past the depth add
        # little to the fusion, and the keyword side costs in proportion to its limit.
        return keyword_hits(
            c, query, flt, k=depth, settings=settings, chunks_per_hit=1,
            budget=settings.hybrid_keyword_budget, ranks=True, beside=beside,
            shown=keyword_shown(k, settings),
        )  # fmt: skip

    def vector_half(columns: str) -> list[Hit]:
        return vector_search(conn, vector, flt, k=depth, settings=settings, columns=columns)

    weights = {"vector": settings.hybrid_vector_weight, "keyword": settings.hybrid_keyword_weight}
    wanted = settings.hybrid_concurrent if concurrent is None else concurrent
    if wanted and conn.execute(WRITES_SQL).scalar() is None:
        future = _HALVES.submit(_on_own_connection, conn.engine, keyword_half)
        vector_hits = vector_half(KEY_COLUMNS)
        ranked = {"vector": vector_hits, "keyword": future.result()}
        return _fill(conn, fuse(ranked, k=2 * depth, rrf_k=settings.rrf_k, weights=weights), k)
    beside = _VectorBeside(conn, vector, flt, depth, settings)
    keyword = keyword_half(conn, beside)
    sent = beside.hits()
    ranked = {"vector": vector_half(HIT_COLUMNS) if sent is None else sent, "keyword": keyword}
    return _fill(conn, fuse(ranked, k=2 * depth, rrf_k=settings.rrf_k, weights=weights), k)


def keyword_shown(k: int, settings: Settings) -> int:
    """Keyword ranks that may reach the fused top ``k`` without a vector rank.

    A document only the keyword half found, at rank r, scores w_k / (rrf_k + r); once
    the vector half returned ``k`` documents the k-th fused score is at least
    w_v / (rrf_k + k), so r <= (w_k / w_v)(rrf_k + k) - rrf_k (one more against float
    ties). At the default weights (1 and 0.5, rrf_k 20) that is none. A pending row
    also stands in for its vector rank (core/memory/search.py, fuse): the keyword half
    shows every pending row.
    """
    w_v, w_k, c = settings.hybrid_vector_weight, settings.hybrid_keyword_weight, settings.rrf_k
    if w_v <= 0:
        return max(k, settings.hybrid_depth)
    return max(0, math.floor(w_k / w_v * (c + k) - c) + 1)


def _fill(conn: Connection, fused: list[Hit], k: int) -> list[Hit]:
    """The first ``k`` fused hits, those a half returned without snippet, metadata and
    date (``created_at`` None) read in one statement. A row gone from this statement's
    snapshot (the concurrent halves' other connection, or a delete committed since the
    half's statement) is dropped and the next hit takes its place."""
    out: list[Hit] = []
    start = 0
    while len(out) < k and start < len(fused):
        batch = fused[start : start + k - len(out)]
        start += len(batch)
        missing = [h.row_id for h in batch if h.created_at is None]
        found = {r.id: r for r in conn.execute(FILL_SQL, {"ids": missing})} if missing else {}
        for hit in batch:
            if hit.created_at is None:
                if (row := found.get(hit.row_id)) is None:
                    continue
                hit.snippet = row.content[:SNIPPET_CHARS]
                hit.metadata = row.metadata
                hit.created_at = row.created_at
            out.append(hit)
    return out


class _VectorBeside:
    """Hybrid's vector half, sent on the keyword half's connection while that half adds
    up what it read (a :data:`core.memory.bm25_types.Beside`). A plan that comes back
    short goes on statement by statement after it, as any vector query does."""

    def __init__(
        self, conn: Connection, vector: Any, flt: SearchFilter, depth: int, settings: Settings
    ) -> None:
        self.conn, self.vector, self.flt, self.depth, self.settings = (
            conn, vector, flt, depth, settings,
        )  # fmt: skip
        self.run: VectorRun | None = None
        self._sent = False

    @contextmanager
    def __call__(self, pg: psycopg.Connection) -> Iterator[None]:
        if self._sent:  # a restarted keyword query: the half was sent already
            yield
            return
        self._sent = True
        query = VectorQuery.planned(
            self.conn, self.vector, self.flt, limit=self.depth, settings=self.settings,
            columns=HIT_COLUMNS,
        )  # fmt: skip
        with pg.pipeline():
            cur = query.send(pg)
            yield
            rows = cur.fetchall()
        self.run = query.settle(rows) or query.run()

    def hits(self) -> list[Hit] | None:
        """The half's hits, or None when it was never sent (or must go deeper: many
        chunks of one document, which vector_search handles)."""
        return None if self.run is None else vector_documents(self.run, self.depth, self.depth)


def _on_own_connection(engine: Engine, call: Callable[[Connection], list[Hit]]) -> list[Hit]:
    with engine.connect() as conn:
        return call(conn)
