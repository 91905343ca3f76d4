"""What the agents' ``search_memory`` tool calls: JSON-ready hits, scoped to the user."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection

from config import Settings
from core.memory.search import search


def search_memory(
    conn: Connection,
    query: str,
    *,
    user_id: uuid.UUID,
    k: int = 5,
    mode: str = "hybrid",
    entity_type: str | None = None,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """Search the caller's memory for an agent (never another user's).

    Args:
        conn: a connection in the agent step's transaction.
        query: what the agent looks for.
        user_id: the conversation's user; required, so an agent cannot search everyone.
        k: hits wanted (1-100).
        mode: ``hybrid`` (default), ``vector`` or ``keyword``.
        entity_type: only this kind of document.
        settings: default the process settings.

    Returns:
        Hits as plain dicts (entity_type, entity_id, snippet, score, rank).
    """
    hits = search(
        conn, query, user_id=user_id, mode=mode, k=k, entity_type=entity_type, settings=settings
    )
    return [
        {
            "entity_type": h.entity_type,
            "entity_id": str(h.entity_id),
            "snippet": h.snippet,
            "score": round(h.score, 6),
            "rank": h.ranks,
        }
        for h in hits
    ]
