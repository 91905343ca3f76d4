"""Searching the index, always scoped to the caller unless they are an admin."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from core.models import SearchIndex
from core.models.search import TEXT_SEARCH_CONFIG


@dataclass
class Hit:
    entity_type: str
    entity_id: uuid.UUID
    snippet: str
    score: float
    metadata: dict[str, Any]


def keyword_search(
    conn: Connection,
    query: str,
    *,
    user_id: uuid.UUID | None,
    k: int = 10,
    entity_type: str | None = None,
) -> list[Hit]:
    """PostgreSQL full-text search over the index.

    Args:
        conn: any connection.
        query: words to look for (web-search syntax: quotes, OR, -word).
        user_id: restrict to this owner; None searches everything (admins).
        k: at most this many hits.
        entity_type: restrict to one kind of document.

    Returns:
        Hits, best first.
    """
    tsquery = func.websearch_to_tsquery(TEXT_SEARCH_CONFIG, query)
    rank = func.ts_rank_cd(SearchIndex.tsv, tsquery)
    stmt = (
        select(
            SearchIndex.entity_type,
            SearchIndex.entity_id,
            SearchIndex.content,
            SearchIndex.metadata_.label("meta"),
            rank.label("score"),
        )
        .where(SearchIndex.tsv.op("@@")(tsquery))
        .order_by(rank.desc(), SearchIndex.id)
        .limit(k)
    )
    if user_id is not None:
        stmt = stmt.where(SearchIndex.user_id == user_id)
    if entity_type is not None:
        stmt = stmt.where(SearchIndex.entity_type == entity_type)
    return [
        Hit(r.entity_type, r.entity_id, r.content[:300], float(r.score), r.meta)
        for r in conn.execute(stmt)
    ]
