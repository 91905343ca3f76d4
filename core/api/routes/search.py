"""``GET /v1/search``: vector, keyword and hybrid search over everything the caller wrote."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from core.api.deps import CurrentUser, SessionDep, SettingsDep
from core.errors import ValidationFailed
from core.memory.filters import parse_metadata_value
from core.memory.search import MAX_K, search

router = APIRouter(prefix="/v1", tags=["search"])

META_PREFIX = "meta."


class SearchHit(BaseModel):
    entity_type: str
    entity_id: uuid.UUID
    snippet: str
    score: float = Field(description="cosine similarity (vector), BM25 (keyword), RRF (hybrid)")
    rank: dict[str, int] = Field(description="1-based rank of the hit in each mode that found it")
    metadata: dict[str, Any]
    created_at: datetime | None


class SearchResults(BaseModel):
    query: str
    mode: str
    k: int
    hits: list[SearchHit]


def metadata_filters(request: Request) -> dict[str, Any]:
    """``meta.<key>=<value>`` query parameters as a JSON containment filter."""
    out: dict[str, Any] = {}
    for name, raw in request.query_params.multi_items():
        if name.startswith(META_PREFIX):
            key = name[len(META_PREFIX) :]
            if not key:
                raise ValidationFailed(f"{name}: a metadata filter needs a key (meta.<key>=value)")
            out[key] = parse_metadata_value(raw)
    return out


@router.get(
    "/search",
    summary="Search messages and entities",
    description=(
        "Hybrid (reciprocal rank fusion of HNSW cosine and full text) by default. "
        "Scoped to the caller; admins search every user's content. Metadata filters: "
        "`meta.<key>=<value>` (JSON containment; the value is parsed as JSON when it can "
        'be, so `meta.turn=3` is a number and `meta.turn="3"` a string).'
    ),
)
def search_route(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    q: str = Query(..., min_length=1, max_length=2000, description="what to look for"),
    mode: Literal["vector", "keyword", "hybrid", "recall"] = Query("hybrid"),
    k: int = Query(10, ge=1, le=MAX_K, description=f"hits wanted, at most {MAX_K}"),
    entity_type: str | None = Query(None, max_length=63),
    since: datetime | None = Query(None, description="created at or after (ISO 8601)"),
    until: datetime | None = Query(None, description="created before (ISO 8601)"),
) -> SearchResults:
    if since and until and since >= until:
        raise ValidationFailed("since: must be earlier than until")
    hits = search(
        session.connection(),
        q,
        user_id=None if user.is_admin else user.id,
        mode=mode,
        k=k,
        entity_type=entity_type,
        since=since,
        until=until,
        metadata=metadata_filters(request),
        settings=settings,
    )
    return SearchResults(
        query=q,
        mode=mode,
        k=k,
        hits=[
            SearchHit(
                entity_type=h.entity_type,
                entity_id=h.entity_id,
                snippet=h.snippet,
                score=h.score,
                rank=h.ranks,
                metadata=h.metadata,
                created_at=h.created_at,
            )
            for h in hits
        ],
    )
