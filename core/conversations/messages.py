"""Normalized messages: one row per LangGraph message, idempotent by its message id.

Each stored message is also indexed for search (``core.memory.indexer``) in the
same transaction, and the conversation's ``messages_count``/``last_activity``
move with it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from sqlalchemy import Connection, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert

from core.conversations import cursor
from core.errors import ValidationFailed
from core.memory.indexer import index_document
from core.models import Conversation, Message


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
    stored = []
    for m in messages:
        ins = insert(Message).values(
            conversation_id=conversation_id,
            user_id=owner_id,
            role=m.role,
            content=m.content,
            agent=m.agent,
            model=m.model,
            token_count=m.token_count,
            metadata_=m.metadata,
            lc_id=m.lc_id,
        )
        # A step re-run after a crash produces the same message id: the checkpoint's
        # version replaces the stored one (xmax = 0 tells a fresh insert from an update).
        stmt: Any = ins.on_conflict_do_update(
            index_elements=["conversation_id", "lc_id"],
            set_={
                "content": ins.excluded.content,
                "metadata": ins.excluded["metadata"],
                "model": ins.excluded.model,
                "token_count": ins.excluded.token_count,
            },
        ).returning(Message, literal_column("xmax = 0").label("inserted"))
        row = conn.execute(stmt).one()
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
    values: dict[str, Any] = {}
    if stored:
        values = {
            "messages_count": Conversation.messages_count + len(stored),
            "last_activity": func.now(),
        }
    if track_turn and messages:
        last = messages[-1]
        values["turn_pending"] = not (
            last.role == "assistant" and "tool_calls" not in last.metadata
        )
    if values:
        conn.execute(
            update(Conversation).where(Conversation.id == conversation_id).values(**values)
        )
    return stored


def stored_ids(conn: Connection, conversation_id: uuid.UUID) -> set[str]:
    """Message ids (LangGraph's) already stored for a conversation."""
    rows = conn.execute(
        select(Message.lc_id).where(
            Message.conversation_id == conversation_id, Message.lc_id.is_not(None)
        )
    ).scalars()
    return {r for r in rows if r is not None}


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
