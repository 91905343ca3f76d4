"""``/threads``: conversations as Agent Protocol threads (thread id = conversation id).

A user sees only their own threads (admins: all); another user's id answers 404.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core.api.deps import CurrentUser, RuntimeDep, SessionDep
from core.api.routes.protocol.assistants import reject_extra
from core.conversations.store import create_conversation, delete_conversation, get_conversation
from core.errors import ValidationFailed
from core.models import Conversation
from core.protocols.serialize import state_json
from core.protocols.threads import (
    ASSISTANT_KEY,
    append_messages,
    merge_metadata,
    resolve_agent,
    thread_config,
    thread_json,
    thread_state,
)
from core.runs.store import busy_threads

router = APIRouter(prefix="/threads", tags=["agent protocol"])
DEFAULT_AGENT = "assistant"
CHANNEL = "agent-protocol"


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None


class ThreadUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] = Field(default_factory=dict)


class ThreadSearch(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] | None = None
    ids: list[uuid.UUID] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["thread_id", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


class StateUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = None


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="allow")

    limit: int = Field(default=10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


@router.post("", summary="Create a thread (a conversation)")
def create(
    body: ThreadCreate,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reject_extra(body)
    if body.if_exists is not None:
        raise ValidationFailed("if_exists: threads get server-made ids; there is nothing to match")
    agent = body.graph_id or DEFAULT_AGENT
    resolve_agent(runtime, user, agent)
    metadata = {**(body.metadata or {}), "graph_id": agent, ASSISTANT_KEY: agent}
    row = create_conversation(session.connection(), user, agent, metadata=metadata, channel=CHANNEL)
    return thread_json(runtime, row, busy=False, values=False)


@router.post("/search", summary="Threads of the caller")
def search(
    body: ThreadSearch,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> list[dict[str, Any]]:
    reject_extra(body)
    stmt = select(Conversation.__table__).where(Conversation.deleted_at.is_(None))
    if not user.is_admin:
        stmt = stmt.where(Conversation.user_id == user.id)
    if body.metadata:
        stmt = stmt.where(Conversation.context_data.contains(body.metadata))
    if body.ids is not None:
        stmt = stmt.where(Conversation.id.in_(body.ids))
    if body.status == "interrupted":
        stmt = stmt.where(Conversation.pending_interrupts.is_not(None))
    if body.status == "error":
        stmt = stmt.where(
            Conversation.turn_pending.is_(True), Conversation.pending_interrupts.is_(None)
        )
    column = {
        "thread_id": Conversation.id,
        "created_at": Conversation.created_at,
        "updated_at": Conversation.last_activity,
    }[body.sort_by or "updated_at"]
    stmt = stmt.order_by(column.asc() if body.sort_order == "asc" else column.desc())
    conn = session.connection()
    rows = list(conn.execute(stmt))
    busy = busy_threads(conn, [r.id for r in rows])
    if body.status in ("idle", "busy"):
        want_busy = body.status == "busy"
        rows = [
            r for r in rows if (r.id in busy) == want_busy and (want_busy or not r.turn_pending)
        ]
    page = rows[body.offset : body.offset + body.limit]
    return [thread_json(runtime, r, busy=r.id in busy) for r in page]


@router.post("/count", summary="How many threads of the caller match")
def count(
    body: ThreadSearch,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> int:
    body.limit, body.offset = 1000, 0
    return len(search(body, request, user, session, runtime))


@router.get("/{thread_id}", summary="One thread with its current values")
def get_one(
    thread_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    conn = session.connection()
    row = get_conversation(conn, user, thread_id)
    return thread_json(runtime, row, busy=bool(busy_threads(conn, [thread_id])))


@router.patch("/{thread_id}", summary="Add metadata to a thread")
def patch(
    thread_id: uuid.UUID,
    body: ThreadUpdate,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reject_extra(body)
    conn = session.connection()
    get_conversation(conn, user, thread_id)
    merge_metadata(conn, thread_id, body.metadata)
    row = get_conversation(conn, user, thread_id)
    return thread_json(runtime, row, busy=bool(busy_threads(conn, [thread_id])))


@router.delete("/{thread_id}", status_code=204, summary="Delete a thread (soft)")
def delete(thread_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    delete_conversation(session.connection(), user, thread_id)
    return Response(status_code=204)


@router.get("/{thread_id}/state", summary="The thread's current state")
def get_state(
    thread_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    subgraphs: bool = False,
) -> dict[str, Any]:
    get_conversation(session.connection(), user, thread_id)
    return thread_state(runtime, thread_id)


@router.get("/{thread_id}/state/{checkpoint_id}", summary="The state at a checkpoint")
def get_state_at(
    thread_id: uuid.UUID,
    checkpoint_id: str,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    subgraphs: bool = False,
) -> dict[str, Any]:
    get_conversation(session.connection(), user, thread_id)
    return thread_state(runtime, thread_id, checkpoint_id)


@router.post("/{thread_id}/state", summary="Add messages to the thread's state")
def update_state(
    thread_id: uuid.UUID,
    body: StateUpdate,
    user: CurrentUser,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reject_extra(body)
    # append_messages checks visibility and takes the turn lock in its own transaction.
    if not isinstance(body.values, dict) or set(body.values) != {"messages"}:
        raise ValidationFailed(
            "values: only {'messages': [...]} can be written (the messages are added)"
        )
    messages = body.values["messages"]
    if isinstance(messages, dict):
        messages = [messages]
    if not isinstance(messages, list) or not messages:
        raise ValidationFailed("values.messages: a non-empty list of messages")
    return append_messages(runtime, user, thread_id, messages, body.as_node)


@router.post("/{thread_id}/history", summary="Past states, newest first")
def history(
    thread_id: uuid.UUID,
    body: HistoryQuery,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> list[dict[str, Any]]:
    reject_extra(body)
    if body.checkpoint:
        raise ValidationFailed("checkpoint: history of subgraphs is not supported")
    get_conversation(session.connection(), user, thread_id)
    before = body.before
    if isinstance(before, dict):
        before = before.get("checkpoint_id")
    snapshots = runtime.compiled().graph.get_state_history(
        thread_config(thread_id),
        filter=body.metadata or None,
        before=thread_config(thread_id, before) if before else None,
        limit=body.limit,
    )
    return [state_json(s, str(thread_id)) for s in snapshots]
