"""Conversations: creation, visibility (owner or admin), listing, soft delete, statistics.

Functions take the caller's connection and never commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, Select, func, insert, select, update

from core.auth.users import Principal
from core.conversations import cursor
from core.errors import NotFoundError, ValidationFailed
from core.models import AgentSwitch, Conversation, ConversationStatus, Message
from core.runtime.handoffs import record_switch


def conversation_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "session_id": row.session_id,
        "user_id": str(row.user_id),
        "channel": row.channel,
        "status": str(row.status),
        "current_agent": row.current_agent,
        "metadata": row.context_data,
        "messages_count": row.messages_count,
        # A turn was interrupted (crash, failing models): the next message or
        # POST .../resume completes it from its checkpoint.
        "pending_turn": row.turn_pending,
        # "interrupted": the turn waits for a person (interrupts: id, value, node);
        # POST .../resume with a decision goes on.
        "turn_status": "interrupted"
        if row.pending_interrupts is not None
        else "pending"
        if row.turn_pending
        else "idle",
        "interrupts": row.pending_interrupts or [],
        "last_activity": row.last_activity.isoformat(),
        "created_at": row.created_at.isoformat(),
    }


def create_conversation(
    conn: Connection,
    principal: Principal,
    agent: str,
    *,
    metadata: dict[str, Any] | None = None,
    channel: str = "api",
    conversation_id: uuid.UUID | None = None,
) -> Row[Any]:
    """A new active conversation with ``agent`` (its first switch is recorded).

    The caller checks the agent exists and may be used by the principal, and that
    ``conversation_id`` (a client-chosen id) is free.
    """
    conversation_id = conn.execute(
        insert(Conversation)
        .values(
            **({"id": conversation_id} if conversation_id else {}),
            session_id=f"s_{uuid.uuid4().hex}",
            user_id=principal.id,
            channel=channel,
            current_agent=agent,
            context_data=metadata or {},
        )
        .returning(Conversation.id)
    ).scalar_one()
    record_switch(conn, conversation_id, None, agent, "conversation started")
    return get_conversation(conn, principal, conversation_id)


def _visible(stmt: Select[Any], principal: Principal) -> Select[Any]:
    stmt = stmt.where(Conversation.deleted_at.is_(None))
    if not principal.is_admin:
        stmt = stmt.where(Conversation.user_id == principal.id)
    return stmt


def get_conversation(
    conn: Connection,
    principal: Principal,
    conversation_id: uuid.UUID,
    *,
    lock: bool = False,
    extra: tuple[ColumnElement[Any], ...] = (),
) -> Row[Any]:
    """The conversation if the principal may see it (its owner, or an admin).

    Args:
        conn: any connection.
        principal: the caller.
        conversation_id: the conversation.
        lock: lock the row (FOR UPDATE).
        extra: more labeled columns to read in the same round trip; evaluated only
            for a visible conversation.

    Raises:
        NotFoundError: missing, deleted, or someone else's (indistinguishable on purpose).
    """
    stmt = _visible(
        select(Conversation.__table__, *extra).where(Conversation.id == conversation_id),
        principal,
    )
    if lock:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFoundError(f"no conversation {conversation_id}")
    return row


def list_conversations(
    conn: Connection,
    principal: Principal,
    *,
    status: ConversationStatus | None = None,
    limit: int = 20,
    after: str | None = None,
) -> tuple[list[Row[Any]], str | None]:
    """A page of conversations, newest first; returns the rows and the next cursor."""
    stmt = _visible(select(Conversation.__table__), principal)
    if status is not None:
        stmt = stmt.where(Conversation.status == status)
    if after:
        created, last_id = cursor.decode(after, 2)
        try:
            key = (datetime.fromisoformat(created), uuid.UUID(last_id))
        except (TypeError, ValueError):
            raise ValidationFailed("invalid cursor") from None
        stmt = stmt.where(
            (Conversation.created_at < key[0])
            | ((Conversation.created_at == key[0]) & (Conversation.id < key[1]))
        )
    rows = list(
        conn.execute(
            stmt.order_by(Conversation.created_at.desc(), Conversation.id.desc()).limit(limit + 1)
        )
    )
    page = rows[:limit]
    more = len(rows) > limit
    return page, cursor.encode(page[-1].created_at.isoformat(), page[-1].id) if more else None


def delete_conversation(conn: Connection, principal: Principal, conversation_id: uuid.UUID) -> None:
    """Soft delete: hidden from every listing, kept until ``agentry prune`` removes it."""
    get_conversation(conn, principal, conversation_id)
    conn.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(deleted_at=func.now(), status=ConversationStatus.closed)
    )


def conversation_stats(conn: Connection, conversation: Row[Any]) -> dict[str, Any]:
    """Message count, tokens, per-role counts and the time of the last message."""
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Message.token_count), 0),
            func.max(Message.created_at),
        ).where(Message.conversation_id == conversation.id)
    ).one()
    by_role = dict(
        conn.execute(
            select(Message.role, func.count())
            .where(Message.conversation_id == conversation.id)
            .group_by(Message.role)
        ).all()
    )
    return {
        "conversation_id": str(conversation.id),
        "messages_count": int(row[0] or 0),
        "tokens": int(row[1] or 0),
        "by_role": by_role,
        "last_message_at": row[2].isoformat() if row[2] else None,
        "current_agent": conversation.current_agent,
    }


def list_switches(conn: Connection, conversation_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(AgentSwitch.__table__)
        .where(AgentSwitch.conversation_id == conversation_id)
        .order_by(AgentSwitch.switched_at, AgentSwitch.id)
    )
    return [
        {
            "from_agent": r.from_agent,
            "to_agent": r.to_agent,
            "reason": r.reason,
            "switched_at": r.switched_at.isoformat(),
        }
        for r in rows
    ]
