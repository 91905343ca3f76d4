"""Built-in tool: search everything this user wrote before — messages and records — by
meaning and by words (hybrid search over the vector memory)."""

from __future__ import annotations

from core.memory.tool import search_memory as search_user_memory
from core.runtime.context import current_turn


def search_memory(query: str, k: int = 5) -> str:
    """Search this user's earlier messages and records, by meaning and by words.

    Args:
        query: what to look for, in plain words.
        k: at most this many results (1-20).
    """
    turn = current_turn()
    with turn.db.engine.connect() as conn:
        hits = search_user_memory(
            conn, query, user_id=turn.user_id, k=max(1, min(k, 20)), settings=turn.settings
        )
    if not hits:
        return "nothing in memory matches"
    return "\n".join(f"- [{h['entity_type']}] {h['snippet']}" for h in hits)
