"""Conversational memory: turns indexed with who said them, when, and what was around them.

A single turn ("Yes, it was amazing!") rarely answers a question asked months later
on its own; the speaker, the session's date and the neighbouring turns do. So each
imported message is indexed as two rows of the same document (the hit is still the
message):

* chunk 0, the *turn* view: ``Speaker: text`` — what plain search sees;
* chunk 1, the *context* view (metadata ``context: true``): the session's date and
  the turns around it (:data:`CONTEXT_TURNS` either side, same conversation).

Each imported conversation is also one ``conversation`` document (all its turns):
a fifth ranking orders the candidate turns by how well their whole session matches
the question by BM25 (session-level retrieval).

:func:`recall` ranks the turn views and the context views separately, each by
vector and by BM25, and fuses the four rankings (reciprocal rank fusion): a turn
rises when its own words or its surroundings match. No model other than the
embedder runs at indexing time.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from config import Settings
from core.memory.embeddings import Embedder, get_embedder
from core.memory.filters import SearchFilter
from core.memory.indexer import remove_document
from core.memory.search import Hit, fuse, keyword_hits, validate, vector_search
from core.memory.strategy import SNIPPET_CHARS

CONTEXT_TURNS = 2  # neighbours either side in the context view
MAX_VIEW_CHARS = 2000  # the embedder reads 256 tokens; BM25 needs no more either
MAX_SESSION_CHARS = 200_000  # a tsvector holds 1 MB; sessions are far shorter
# Five short rankings: a small RRF constant lets a first place in one of them count
# (LoCoMo conversations 26 and 30: k 10 → recall@10 0.764, k 60 → 0.724).
RECALL_RRF_K = 10
SESSION_ENTITY = "conversation"

INSERT_VIEW_SQL = text(
    "INSERT INTO search_index (entity_type, entity_id, chunk, content, user_id, metadata, "
    "created_at) VALUES (:entity_type, :entity_id, :chunk, :content, :user_id, "
    "CAST(:metadata AS jsonb), :created_at)"
)
TURN_CONTENT_SQL = text(
    "SELECT entity_id, content FROM search_index WHERE entity_type = 'message' "
    "AND chunk = 0 AND entity_id = ANY(:ids)"
)


@dataclass(frozen=True)
class Turn:
    """One stored message, as the indexer needs it."""

    message_id: uuid.UUID
    role: str
    content: str
    created_at: datetime
    speaker: str | None = None


def _label(turn: Turn) -> str:
    return f"{turn.speaker or turn.role}: {turn.content}"


def turn_views(turns: list[Turn], index: int) -> tuple[str, str]:
    """The turn view and the context view of ``turns[index]``."""
    turn = turns[index]
    lo, hi = max(0, index - CONTEXT_TURNS), min(len(turns), index + CONTEXT_TURNS + 1)
    around = " ".join(_label(t) for t in turns[lo:hi])
    # "8 May 2023": the words a question about the date would use.
    date = f"{turn.created_at.day} {turn.created_at:%B %Y}"
    return _label(turn)[:MAX_VIEW_CHARS], f"({date}) {around}"[:MAX_VIEW_CHARS]


def index_turns(
    conn: Connection,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    turns: list[Turn],
) -> int:
    """Index a conversation's turns with both views, in the caller's transaction.

    Rows are written without vectors (the embedding worker or ``agentry index``
    fills them); keyword search sees them at once. Re-indexing replaces.

    Returns:
        The number of index rows written.
    """
    rows: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        remove_document(conn, entity_type="message", entity_id=turn.message_id)
        base = {"conversation_id": str(conversation_id), "role": turn.role}
        if turn.speaker:
            base["speaker"] = turn.speaker
        for chunk, (content, meta) in enumerate(
            zip(turn_views(turns, i), (base, {**base, "context": True}), strict=True)
        ):
            rows.append(
                {
                    "entity_type": "message",
                    "entity_id": turn.message_id,
                    "chunk": chunk,
                    "content": content,
                    "user_id": user_id,
                    "metadata": json.dumps(meta),
                    "created_at": turn.created_at,
                }
            )
    remove_document(conn, entity_type=SESSION_ENTITY, entity_id=conversation_id)
    if turns:
        rows.append(
            {
                "entity_type": SESSION_ENTITY,
                "entity_id": conversation_id,
                "chunk": 0,
                "content": " ".join(_label(t) for t in turns)[:MAX_SESSION_CHARS],
                "user_id": user_id,
                "metadata": json.dumps({"conversation_id": str(conversation_id)}),
                "created_at": turns[0].created_at,
            }
        )
        conn.execute(INSERT_VIEW_SQL, rows)
    return len(rows)


def recall(
    conn: Connection,
    query: str,
    *,
    user_id: uuid.UUID | None,
    k: int = 10,
    settings: Settings,
    embedder: Embedder | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[Hit]:
    """Messages that answer ``query``: turn and context views, vector and BM25, fused.

    Messages indexed without a context view (live ones) compete on their turn view.

    Args:
        conn: a connection in a transaction.
        query: the question.
        user_id: scope (None: every user's, admins only).
        k: hits wanted, 1..100.
        settings: search settings (depth, RRF constant).
        embedder: default the configured provider.
        since / until / metadata: as for :func:`core.memory.search.search`.

    Returns:
        Message hits, best first; the snippet is the turn itself.
    """
    validate(query, "hybrid", k)
    embedder = embedder or get_embedder(settings)
    vector = embedder.embed_query(query)
    depth = max(k, settings.hybrid_depth)
    meta = metadata or {}
    turn = SearchFilter(user_id, "message", since, until, meta, context=False)
    around = SearchFilter(user_id, "message", since, until, meta, context=True)
    ranked = {
        "vector": vector_search(conn, vector, turn, k=depth, settings=settings),
        "keyword": keyword_hits(conn, query, turn, k=depth, settings=settings),
        "context_vector": vector_search(conn, vector, around, k=depth, settings=settings),
        "context_keyword": keyword_hits(conn, query, around, k=depth, settings=settings),
    }
    sessions = SearchFilter(user_id, SESSION_ENTITY, since, until)
    by_session = keyword_hits(conn, query, sessions, k=depth, settings=settings)
    ranked["session"] = _by_session(ranked, by_session)
    hits = fuse(ranked, k=k, rrf_k=RECALL_RRF_K, weights={})
    _turn_snippets(conn, hits)
    return hits


def _by_session(ranked: dict[str, list[Hit]], sessions: list[Hit]) -> list[Hit]:
    """The candidate turns ordered by their session's rank, then by their best rank."""
    order = {str(h.entity_id): i for i, h in enumerate(sessions)}
    best: dict[uuid.UUID, tuple[int, Hit]] = {}
    for hits in ranked.values():
        for rank, hit in enumerate(hits):
            if hit.entity_id not in best or rank < best[hit.entity_id][0]:
                best[hit.entity_id] = (rank, hit)
    keyed = [
        (order[cid], rank, hit)
        for rank, hit in best.values()
        if (cid := str(hit.metadata.get("conversation_id"))) in order
    ]
    return [hit for _, _, hit in sorted(keyed, key=lambda x: (x[0], x[1]))]


def _turn_snippets(conn: Connection, hits: list[Hit]) -> None:
    """Show the turn, not its surroundings, for hits found by their context view."""
    wanted = [h.entity_id for h in hits if h.chunk != 0]
    if not wanted:
        return
    found: dict[uuid.UUID, str] = {
        r.entity_id: r.content for r in conn.execute(TURN_CONTENT_SQL, {"ids": wanted})
    }
    for hit in hits:
        if hit.entity_id in found:
            hit.snippet = found[hit.entity_id][:SNIPPET_CHARS]
            hit.chunk = 0
            hit.metadata = {k: v for k, v in hit.metadata.items() if k != "context"}
