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

from sqlalchemy import Connection

from config import Settings, get_settings
from core.errors import ValidationFailed
from core.memory.bm25 import keyword_rows
from core.memory.bm25_types import Beside
from core.memory.embeddings import Embedder, get_embedder
from core.memory.filters import SearchFilter
from core.memory.strategy import ROW_COLUMNS, SNIPPET_CHARS, PlanKind
from core.memory.vector_query import VectorRun, run_vector_query

MODES = ("vector", "keyword", "hybrid", "recall")
MAX_K = 100


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


def to_hits(rows: list[Any], mode: str, score: Any) -> list[Hit]:
    """Best chunk per document, in order, with this mode's 1-based rank (rows of key
    columns only, or with None for content, give hits without snippet, metadata and
    date: ``created_at`` None, which hybrid fills in after fusing if it shows them,
    core/memory/hybrid.py)."""
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
        shown = full and r.content is not None
        hits.append(
            Hit(
                r.entity_type,
                r.entity_id,
                r.content[:SNIPPET_CHARS] if shown else "",
                float(score(r)),
                r.metadata if shown else {},
                {mode: len(hits) + 1},
                r.chunk,
                r.created_at if shown else None,
                bool(r.pending) if pending else False,
                r.id,
            )
        )
    return hits


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
        if (hits := vector_documents(run, k, limit)) is not None:
            return hits
        limit *= 2


def vector_documents(run: VectorRun, k: int, limit: int) -> list[Hit] | None:
    """The ``k`` documents of a vector run that asked for ``limit`` chunks, or None when
    several chunks of one document left fewer than ``k`` and more chunks exist: the
    query is then asked again, deeper."""
    hits = to_hits(run.rows, "vector", lambda r: 1.0 - float(r.distance))
    if len(hits) >= k or len(run.rows) < limit or limit >= 10 * MAX_K:
        return hits[:k]
    return None


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
    beside: Beside | None = None,
    shown: int | None = None,
) -> list[Hit]:
    """BM25 over the full-text index under ``flt`` (core/memory/bm25.py); score = BM25.

    ``chunks_per_hit`` chunks are ranked per wanted document (a document's other chunks
    are dropped), so k documents come back even when the best chunks share documents.
    ``budget``: postings the index may read (default AGENTRY_KEYWORD_BUDGET).
    ``ranks``: an order is enough (hybrid's half; see keyword_rows), as ``beside``
    and ``shown`` (hits past it may lack snippet, metadata and date).
    """
    settings = settings or get_settings()
    limit = chunks_per_hit * k
    run = keyword_rows(
        conn, query, flt, limit=limit, settings=settings, budget=budget, ranks=ranks,
        beside=beside, shown=shown,
    )  # fmt: skip
    return to_hits(run.rows, "keyword", lambda r: r.score)[:k]


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
    # One entry per document, [hit, score]: its key is hashed once per list it is in.
    fused: dict[tuple[str, uuid.UUID], list[Any]] = {}
    vector_w = weights.get("vector", 1.0)
    for mode, hits in ranked.items():
        w = weights.get(mode, 1.0)
        stand_in = "vector" in ranked and mode != "vector"
        for rank, hit in enumerate(hits, start=1):
            key = (hit.entity_type, hit.entity_id)
            entry = fused.get(key)
            if entry is None:
                copy = Hit(
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
                entry = fused[key] = [copy, 0.0]
            entry[0].ranks[mode] = rank
            entry[1] += w / (rrf_k + rank)
            if hit.pending and stand_in:
                entry[1] += vector_w / (rrf_k + rank)
    out = []
    for hit, score in sorted(fused.values(), key=lambda e: -e[1])[:k]:
        hit.score = score
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
