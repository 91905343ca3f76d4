"""``/threads``: conversations as Agent Protocol threads (thread id = conversation id).

A user sees only their own threads (admins: all); another user's id answers 404.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select, text

from core.api.deps import CurrentUser, RuntimeDep, SessionDep
from core.api.routes.protocol.assistants import reject_extra
from core.conversations.store import delete_conversation, get_conversation
from core.errors import ValidationFailed
from core.models import Conversation
from core.protocols.serialize import state_json
from core.protocols.thread_ops import (
    copy_thread,
    create_thread,
    parse_ttl,
    prune_threads,
    set_ttl,
)
from core.protocols.threads import (
    ASSISTANT_KEY,
    append_messages,
    merge_metadata,
    resolve_assistant,
    thread_config,
    thread_json,
    thread_state,
    thread_status,
)
from core.runs.store import busy_threads

router = APIRouter(prefix="/threads", tags=["agent protocol"])
# When the thread's state last changed: its latest checkpoint (ids grow with time).
STATE_UPDATED_AT = (
    select(func.max(text("checkpoint_id")))
    .select_from(text("checkpoints"))
    .where(text("checkpoints.thread_id = conversations.id::text AND checkpoint_ns = ''"))
    .scalar_subquery()
)
DEFAULT_AGENT = "assistant"
CHANNEL = "agent-protocol"


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    thread_id: uuid.UUID | None = None
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    ttl: float | dict[str, Any] | None = None


class ThreadUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] = Field(default_factory=dict)
    ttl: float | dict[str, Any] | None = None


class ThreadPrune(BaseModel):
    model_config = ConfigDict(extra="allow")

    thread_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class StateAt(BaseModel):
    model_config = ConfigDict(extra="allow")

    checkpoint: dict[str, Any]
    subgraphs: bool = False


class ThreadSearch(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] | None = None
    ids: list[uuid.UUID] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: (
        Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] | None
    ) = None
    sort_order: Literal["asc", "desc"] | None = None


class StateUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    values: dict[str, Any] | list[dict[str, Any]] | None = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: dict[str, Any] | None = None


class HistoryQuery(BaseModel):
    model_config = ConfigDict(extra="allow")

    limit: int = Field(default=10, ge=1, le=1000)
    before: str | dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None


@router.post("", summary="Create a thread (a conversation), under a chosen id if given")
def create(
    body: ThreadCreate,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reject_extra(body)
    ttl = parse_ttl(body.ttl)
    # langgraph_sdk sends the graph id inside the metadata; an assistant's UUID names its
    # own agent.
    requested = body.graph_id or (body.metadata or {}).get("graph_id") or DEFAULT_AGENT
    assistant = resolve_assistant(runtime, user, str(requested))
    agent = assistant.agent
    metadata = {**(body.metadata or {}), "graph_id": assistant.graph_id, ASSISTANT_KEY: agent}
    conn = session.connection()
    row = create_thread(
        conn,
        user,
        agent,
        metadata,
        channel=CHANNEL,
        thread_id=body.thread_id,
        if_exists=body.if_exists,
    )
    if ttl is not None:
        set_ttl(conn, row.id, ttl)
    chosen = body.thread_id is not None  # it may be an existing thread (do_nothing)
    busy = chosen and bool(busy_threads(conn, [row.id]))
    return thread_json(runtime, row, busy=busy, values=chosen)


@router.post("/prune", summary="Delete threads, or keep only their latest checkpoint")
def prune(body: ThreadPrune, user: CurrentUser, runtime: RuntimeDep) -> dict[str, Any]:
    reject_extra(body)
    return {"pruned_count": prune_threads(runtime, user, body.thread_ids, body.strategy)}


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
    sort = body.sort_by or "updated_at"
    column = {
        "thread_id": Conversation.id,
        "status": Conversation.last_activity,  # ordered by status below, then by this
        "created_at": Conversation.created_at,
        "updated_at": Conversation.last_activity,
        "state_updated_at": STATE_UPDATED_AT,
    }[sort]
    descending = body.sort_order != "asc"
    stmt = stmt.order_by(
        column.desc().nulls_last() if descending else column.asc().nulls_first(),
        Conversation.id,
    )
    conn = session.connection()
    rows = list(conn.execute(stmt))
    busy = busy_threads(conn, [r.id for r in rows])
    if sort == "status":
        rows.sort(key=lambda r: thread_status(r, r.id in busy), reverse=descending)
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


@router.patch("/{thread_id}", summary="Add metadata to a thread, set its ttl")
def patch(
    thread_id: uuid.UUID,
    body: ThreadUpdate,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reject_extra(body)
    ttl = parse_ttl(body.ttl)
    conn = session.connection()
    get_conversation(conn, user, thread_id)
    merge_metadata(conn, thread_id, body.metadata)
    if ttl is not None:
        set_ttl(conn, thread_id, ttl)
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


@router.post("/{thread_id}/state/checkpoint", summary="The state at a checkpoint")
def get_state_at_checkpoint(
    thread_id: uuid.UUID,
    body: StateAt,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    reject_extra(body)
    if body.checkpoint.get("checkpoint_ns"):
        raise ValidationFailed("checkpoint.checkpoint_ns: there are no subgraph checkpoints")
    checkpoint_id = body.checkpoint.get("checkpoint_id")
    if not isinstance(checkpoint_id, str) or not checkpoint_id:
        raise ValidationFailed("checkpoint.checkpoint_id: required")
    get_conversation(session.connection(), user, thread_id)
    return thread_state(runtime, thread_id, checkpoint_id)


@router.post("/{thread_id}/copy", summary="A new thread with a copy of this one's state")
def copy(
    thread_id: uuid.UUID, request: Request, user: CurrentUser, runtime: RuntimeDep
) -> dict[str, Any]:
    row = copy_thread(runtime, user, thread_id, CHANNEL)
    return thread_json(runtime, row, busy=False)


@router.post("/{thread_id}/state", summary="Add messages to the thread's state (or fork)")
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
    checkpoint_id = body.checkpoint_id or (body.checkpoint or {}).get("checkpoint_id")
    if (body.checkpoint or {}).get("checkpoint_ns"):
        raise ValidationFailed("checkpoint.checkpoint_ns: there are no subgraph checkpoints")
    return append_messages(runtime, user, thread_id, messages, body.as_node, checkpoint_id)


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
