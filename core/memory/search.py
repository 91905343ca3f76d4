"""Searching the index — vector, keyword and hybrid — always scoped to the caller.

:func:`search` is the entry point for the API, the CLI and the agents' memory
tool. Hits are documents (the best chunk of each), best first, with the rank
each mode gave them. Hybrid's fusion is in core/memory/hybrid.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from config import Settings, get_settings
from core.db.extensions import installed_version
from core.errors import ValidationFailed
from core.memory.bm25 import keyword_rows
from core.memory.embeddings import Embedder, get_embedder
from core.memory.filters import SearchFilter
from core.memory.indexer import vector_literal
from core.memory.strategy import (
    ROW_COLUMNS,
    PlanKind,
    VectorPlan,
    choose_plan,
    next_plan,
)

MODES = ("vector", "keyword", "hybrid", "recall")
MAX_K = 100
SNIPPET_CHARS = 300

COUNT_SQL = "SELECT count(*) FROM (SELECT 1 FROM search_index WHERE {where} LIMIT :cap) s"
TOTAL_ESTIMATE_SQL = text(
    "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = 'search_index'::regclass"
)


@dataclass
class Hit:
    entity_type: str
    entity_id: uuid.UUID
    snippet: str
    score: float
    metadata: dict[str, Any]
    ranks: dict[str, int] = field(default_factory=dict)
    chunk: int = 0
    created_at: datetime | None = None
    # Not embedded yet (the worker has not reached it): no vector rank is possible.
    pending: bool = False
    # The index row (chunk) it came from: hybrid reads the columns after fusing.
    row_id: int | None = None


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


def _to_hits(rows: list[Any], mode: str, score: Any) -> list[Hit]:
    """Best chunk per document, in order, with this mode's 1-based rank (rows of key
    columns only give hits without snippet, metadata and date, which hybrid fills in
    after fusing: core/memory/hybrid.py)."""
    hits: list[Hit] = []
    seen: set[tuple[str, uuid.UUID]] = set()
    # Asked once per list: a missing column costs SQLAlchemy an exception on every row.
    full = bool(rows) and hasattr(rows[0], "content")
    pending = bool(rows) and hasattr(rows[0], "pending")
    for r in rows:
        key = (r.entity_type, r.entity_id)
        if key in seen:
            continue
        seen.add(key)
        hits.append(
            Hit(
                r.entity_type,
                r.entity_id,
                r.content[:SNIPPET_CHARS] if full else "",
                float(score(r)),
                r.metadata if full else {},
                {mode: len(hits) + 1},
                r.chunk,
                r.created_at if full else None,
                bool(r.pending) if pending else False,
                r.id,
            )
        )
    return hits


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
        columns: the row columns returned (KEY_COLUMNS: hybrid's half).

    Returns:
        The plans tried and the rows (best first).
    """
    where, params = flt.where()
    cap = max(settings.search_exact_threshold, limit) + 1
    count_sql = text(COUNT_SQL.format(where=where))

    def count() -> int:
        return int(conn.execute(count_sql, {**params, "cap": cap}).scalar_one())

    # Unfiltered (admin) queries go straight to the index: counting is only needed
    # when its answer comes back short. Filtered ones are planned by their size.
    candidates: int | None = None
    total = 0
    if not flt.is_empty and force is None:
        total = int(conn.execute(TOTAL_ESTIMATE_SQL).scalar() or 0)
        candidates = count()
        total = max(total, candidates)
    if force is PlanKind.exact:
        plan = VectorPlan(PlanKind.exact, 0)
    elif force is not None:
        plan = VectorPlan(force, min(1000, max(settings.hnsw_ef_search, limit)))
    else:
        plan = choose_plan(
            version=_pgvector_version(conn),
            filtered=not flt.is_empty,
            candidates=candidates if candidates is not None else cap,
            total=total,
            limit=limit,
            ef_search=settings.hnsw_ef_search,
            exact_threshold=settings.search_exact_threshold,
        )
    qparams = {**params, "q": vector_literal(vector), "limit": limit}
    plans: list[VectorPlan] = []
    while True:
        plans.append(plan)
        for stmt in plan.settings_sql():
            conn.execute(text(stmt))
        sql = plan.query_sql(where, settings.vector_type, columns)
        rows = list(conn.execute(text(sql), qparams))
        if len(rows) >= limit or plan.kind is PlanKind.exact or force is not None:
            return VectorRun(plans, rows)
        if candidates is None:
            candidates = count()
        if len(rows) >= candidates:
            return VectorRun(plans, rows)
        plan = next_plan(plan)


def vector_search(
    conn: Connection,
    vector: Any,
    flt: SearchFilter,
    *,
    k: int,
    settings: Settings,
    force: PlanKind | None = None,
    columns: str = ROW_COLUMNS,
) -> list[Hit]:
    """The ``k`` nearest documents (cosine); score = cosine similarity."""
    limit = k
    while True:
        run = run_vector_query(
            conn, vector, flt, limit=limit, settings=settings, force=force, columns=columns
        )
        hits = _to_hits(run.rows, "vector", lambda r: 1.0 - float(r.distance))
        # Several chunks of one document count once: fetch deeper until k documents.
        if len(hits) >= k or len(run.rows) < limit or limit >= 10 * MAX_K:
            return hits[:k]
        limit *= 2


def keyword_hits(
    conn: Connection,
    query: str,
    flt: SearchFilter,
    *,
    k: int,
    settings: Settings | None = None,
    chunks_per_hit: int = 3,
    budget: int | None = None,
    ranks: bool = False,
) -> list[Hit]:
    """BM25 over the full-text index under ``flt`` (core/memory/bm25.py); score = BM25.

    ``chunks_per_hit`` chunks are ranked per wanted document (a document's other chunks
    are dropped), so k documents come back even when the best chunks share documents.
    ``budget``: postings the index may read (default AGENTRY_KEYWORD_BUDGET).
    ``ranks``: an order is enough (hybrid's half; see keyword_rows).
    """
    settings = settings or get_settings()
    limit = chunks_per_hit * k
    run = keyword_rows(conn, query, flt, limit=limit, settings=settings, budget=budget, ranks=ranks)
    return _to_hits(run.rows, "keyword", lambda r: r.score)[:k]


def keyword_search(
    conn: Connection,
    query: str,
    *,
    user_id: uuid.UUID | None,
    k: int = 10,
    entity_type: str | None = None,
    settings: Settings | None = None,
) -> list[Hit]:
    """Keyword-only search (kept for callers that need no embedding model).

    Args:
        conn: any connection.
        query: words to look for (quotes, OR, -word: web-search syntax).
        user_id: restrict to this owner; None searches everything (admins).
        k: at most this many hits.
        entity_type: restrict to one kind of document.
        settings: default the process settings.

    Returns:
        Hits, best first.
    """
    flt = SearchFilter(user_id=user_id, entity_type=entity_type)
    return keyword_hits(conn, query, flt, k=k, settings=settings)


def fuse(
    ranked: dict[str, list[Hit]], *, k: int, rrf_k: int, weights: dict[str, float]
) -> list[Hit]:
    """Reciprocal rank fusion: score = sum over modes of weight / (rrf_k + rank).

    A keyword hit still waiting for its vector cannot have a vector rank, and would
    otherwise lose to every vector-only hit (the vector weight is the larger): right
    after a write — or whenever the embedding worker lags — the message just said would
    be missing from hybrid results. Its keyword rank stands in for the missing vector
    rank until the vector exists.
    """
    fused: dict[tuple[str, uuid.UUID], Hit] = {}
    scores: dict[tuple[str, uuid.UUID], float] = {}
    for mode, hits in ranked.items():
        for rank, hit in enumerate(hits, start=1):
            key = (hit.entity_type, hit.entity_id)
            if key not in fused:
                fused[key] = Hit(
                    hit.entity_type,
                    hit.entity_id,
                    hit.snippet,
                    0.0,
                    hit.metadata,
                    {},
                    hit.chunk,
                    hit.created_at,
                    row_id=hit.row_id,
                )
            fused[key].ranks[mode] = rank
            scores[key] = scores.get(key, 0.0) + weights.get(mode, 1.0) / (rrf_k + rank)
            if hit.pending and "vector" in ranked and mode != "vector":
                scores[key] += weights.get("vector", 1.0) / (rrf_k + rank)
    order = sorted(fused, key=lambda key: -scores[key])[:k]
    out = []
    for key in order:
        hit = fused[key]
        hit.score = scores[key]
        out.append(hit)
    return out


def validate(query: str, mode: str, k: int) -> None:
    """Raise :class:`ValidationFailed` naming the bad parameter."""
    if not query.strip():
        raise ValidationFailed("q: the query must not be empty")
    if mode not in MODES:
        raise ValidationFailed(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
    if not 1 <= k <= MAX_K:
        raise ValidationFailed(f"k: must be between 1 and {MAX_K} (got {k})")


def search(
    conn: Connection,
    query: str,
    *,
    user_id: uuid.UUID | None,
    mode: str = "hybrid",
    k: int = 10,
    entity_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    settings: Settings | None = None,
    embedder: Embedder | None = None,
) -> list[Hit]:
    """Search the index: the API, the CLI and the agents' ``search_memory`` tool call this.

    Args:
        conn: a connection in a transaction.
        query: what to look for.
        user_id: the caller's id (scope); None searches all users (admins only!).
        mode: ``vector``, ``keyword``, ``hybrid`` (reciprocal rank fusion) or ``recall``
            (conversational recall over messages, core/memory/conversational.py).
        k: hits wanted, 1..100.
        entity_type: only this kind of document (``message``, an entity type).
        since / until: created_at bounds.
        metadata: JSON containment filter on the rows' metadata.
        settings: default the process settings.
        embedder: default the configured provider.

    Returns:
        Up to ``k`` hits, best first; exactly ``k`` when that many match.

    Raises:
        ValidationFailed: a bad parameter (the message names it).
    """
    validate(query, mode, k)
    settings = settings or get_settings()
    flt = SearchFilter(user_id, entity_type, since, until, metadata or {})
    if mode == "keyword":
        return keyword_hits(conn, query, flt, k=k, settings=settings)
    if mode == "recall":
        from core.memory.conversational import recall  # it builds on this module

        return recall(
            conn,
            query,
            user_id=user_id,
            k=k,
            settings=settings,
            embedder=embedder,
            since=since,
            until=until,
            metadata=metadata,
        )
    embedder = embedder or get_embedder(settings)
    vector = embedder.embed_query(query)
    if mode == "vector":
        return vector_search(conn, vector, flt, k=k, settings=settings)
    from core.memory.hybrid import hybrid_hits  # it builds on this module

    return hybrid_hits(conn, query, vector, flt, k=k, settings=settings)
