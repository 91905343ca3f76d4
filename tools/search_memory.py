"""Built-in tool: keyword search over what the user said earlier, in any conversation."""

from __future__ import annotations

from core.memory.search import keyword_search
from core.runtime.context import current_turn


def search_memory(query: str, k: int = 5) -> str:
    """Search earlier messages of this user for the given words.

    Args:
        query: words to look for.
        k: at most this many results (1-20).
    """
    turn = current_turn()
    with turn.db.engine.connect() as conn:
        hits = keyword_search(
            conn, query, user_id=turn.user_id, k=max(1, min(k, 20)), entity_type="message"
        )
    if not hits:
        return "no earlier message matches"
    return "\n".join(f"- ({h.metadata.get('role', '?')}) {h.snippet}" for h in hits)
