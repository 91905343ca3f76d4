"""Normalized messages: one row per LangGraph message, idempotent by its message id.

Each stored message is also indexed for search (``core.memory.indexer``) in the
same transaction, and the conversation's ``messages_count``/``last_activity``
move with it.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlalchemy import Connection, TextClause, select, text

from core.conversations import cursor
from core.errors import ValidationFailed
from core.memory.indexer import index_document
from core.models import Message


@dataclass
class NewMessage:
    lc_id: str
    role: str
    content: str
    agent: str | None = None
    model: str | None = None
    token_count: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _tool_calls_text(message: AIMessage) -> str:
    calls = ", ".join(f"{c['name']}({json.dumps(c['args'])})" for c in message.tool_calls)
    return f"[tool calls] {calls}"


def from_langchain(message: BaseMessage, agent: str | None = None) -> NewMessage | None:
    """The row for a LangGraph message (None for kinds that are not stored)."""
    text = message.text if isinstance(message.content, list) else str(message.content)
    lc_id = str(message.id)
    if isinstance(message, HumanMessage):
        return NewMessage(lc_id, "user", text)
    if isinstance(message, AIMessage):
        meta: dict[str, Any] = {}
        if message.tool_calls:
            meta["tool_calls"] = [
                {"id": c["id"], "name": c["name"], "args": c["args"]} for c in message.tool_calls
            ]
        usage: dict[str, Any] = dict(message.usage_metadata or {})
        return NewMessage(
            lc_id,
            "assistant",
            text
            if text.strip()
            else _tool_calls_text(message)
            if message.tool_calls
            else "(empty)",
            agent=message.response_metadata.get("agentry_agent") or agent,
            model=message.response_metadata.get("agentry_model"),
            token_count=usage.get("output_tokens"),
            metadata=meta,
        )
    if isinstance(message, ToolMessage):
        meta = {"tool_call_id": message.tool_call_id, "name": message.name}
        if message.status == "error":
            meta["error"] = True
        if isinstance(message.artifact, dict) and "handoff" in message.artifact:
            meta["handoff"] = message.artifact["handoff"]
        return NewMessage(
            lc_id, "tool", text if text.strip() else "(no output)", agent=agent, metadata=meta
        )
    return None


def message_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "seq": row.seq,
        "role": row.role,
        "content": row.content,
        "agent": row.agent,
        "model": row.model,
        "token_count": row.token_count,
        "metadata": row._mapping["metadata"],
        "created_at": row.created_at.isoformat(),
    }


def store_messages(
    conn: Connection,
    conversation_id: uuid.UUID,
    owner_id: uuid.UUID,
    messages: list[NewMessage],
    *,
    track_turn: bool = True,
) -> list[dict[str, Any]]:
    """Insert the messages not stored yet (by message id), index them, update the counters.

    Args:
        conn: a connection in the caller's transaction.
        conversation_id: the conversation.
        owner_id: the conversation's user (rows and the search index are scoped to it).
        messages: in order.
        track_turn: also set ``turn_pending``: a turn is finished exactly when its last
            message is an assistant answer without tool calls (the graph ends there).

    Returns:
        The rows newly inserted, as JSON (already stored ones are updated in place).
    """
    if not messages:
        return []
    last = messages[-1]
    params: dict[str, Any] = {
        "cid": conversation_id,
        "uid": owner_id,
        "pending": not (last.role == "assistant" and "tool_calls" not in last.metadata)
        if track_turn
        else None,
    }
    for i, m in enumerate(messages):
        params |= {
            f"role{i}": m.role,
            f"content{i}": m.content,
            f"agent{i}": m.agent,
            f"model{i}": m.model,
            f"tokens{i}": m.token_count,
            f"meta{i}": json.dumps(m.metadata),
            f"lc{i}": m.lc_id,
        }
    rows = conn.execute(_store_sql(len(messages)), params).all()
    stored = []
    for m, row in zip(messages, rows, strict=True):
        index_document(
            conn,
            entity_type="message",
            entity_id=row.id,
            text=m.content,
            user_id=owner_id,
            metadata={"conversation_id": str(conversation_id), "role": m.role},
        )
        if row.inserted:
            stored.append(message_json(row))
    return stored


@functools.lru_cache(maxsize=32)
def _store_sql(count: int) -> TextClause:
    """Insert ``count`` messages and move the conversation's counters in one statement.

    A step re-run after a crash produces the same message ids: the checkpoint's version
    replaces the stored one, and ``xmax = 0`` tells a fresh insert from such an update,
    so only fresh rows are counted.
    """
    values = ", ".join(
        # Typed, since VALUES alone leaves NULLs and literals as text.
        f"(CAST(:cid AS uuid), CAST(:uid AS uuid), CAST(:role{i} AS varchar),"
        f" CAST(:content{i} AS text), CAST(:agent{i} AS varchar), CAST(:model{i} AS varchar),"
        f" CAST(:tokens{i} AS integer), CAST(:meta{i} AS jsonb), CAST(:lc{i} AS varchar), {i})"
        for i in range(count)
    )
    return text(
        "WITH given (conversation_id, user_id, role, content, agent, model, token_count,"
        f" metadata, lc_id, pos) AS (VALUES {values}),"
        " m AS (INSERT INTO messages (conversation_id, user_id, role, content, agent, model,"
        " token_count, metadata, lc_id)"
        " SELECT conversation_id, user_id, role, content, agent, model, token_count, metadata,"
        " lc_id FROM given ORDER BY pos"
        " ON CONFLICT (conversation_id, lc_id) DO UPDATE SET content = EXCLUDED.content,"
        " metadata = EXCLUDED.metadata, model = EXCLUDED.model,"
        " token_count = EXCLUDED.token_count"
        " RETURNING id, seq, lc_id, role, content, agent, model, token_count, metadata,"
        " created_at, (xmax = 0) AS inserted),"
        " c AS (UPDATE conversations SET"
        " messages_count = messages_count + (SELECT count(*) FROM m WHERE inserted),"
        " last_activity = CASE WHEN EXISTS (SELECT 1 FROM m WHERE inserted) THEN now()"
        " ELSE last_activity END,"
        " turn_pending = coalesce(CAST(:pending AS boolean), turn_pending)"
        " WHERE id = :cid)"
        " SELECT m.* FROM m JOIN given g ON g.lc_id = m.lc_id ORDER BY g.pos"
    )


def stored_ids(conn: Connection, conversation_id: uuid.UUID) -> set[str]:
    """Message ids (LangGraph's) already stored for a conversation."""
    rows = conn.execute(
        select(Message.lc_id).where(
            Message.conversation_id == conversation_id, Message.lc_id.is_not(None)
        )
    ).scalars()
    return {r for r in rows if r is not None}


def unanswered_message(
    conn: Connection, conversation_id: uuid.UUID, known: set[str]
) -> HumanMessage | None:
    """The conversation's last message when it is the user's and not in ``known`` (the
    checkpoint's message ids): a turn that failed before its first checkpoint."""
    row = conn.execute(
        select(Message.role, Message.content, Message.lc_id)
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.seq.desc())
        .limit(1)
    ).first()
    if row is None or row.role != "user" or row.lc_id is None or row.lc_id in known:
        return None
    return HumanMessage(row.content, id=row.lc_id)


def list_messages(
    conn: Connection, conversation_id: uuid.UUID, *, limit: int = 50, after: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of messages in the order they were written; returns rows and the next cursor."""
    stmt = select(Message.__table__).where(Message.conversation_id == conversation_id)
    if after:
        (seq,) = cursor.decode(after, 1)
        if not isinstance(seq, int):
            raise ValidationFailed("invalid cursor")
        stmt = stmt.where(Message.seq > seq)
    rows = list(conn.execute(stmt.order_by(Message.seq).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = cursor.encode(page[-1].seq) if len(rows) > limit else None
    return [message_json(r) for r in page], next_cursor
