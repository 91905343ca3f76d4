"""Threads (= conversations) for the Agent Protocol and the OpenAI-compatible surface."""

from __future__ import annotations

import json
import uuid
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, convert_to_messages
from sqlalchemy import Connection, Row, text, update

from core.auth.users import Principal
from core.conversations.messages import from_langchain, store_messages
from core.conversations.store import get_conversation
from core.errors import ConflictError, NotFoundError, ValidationFailed
from core.models import Conversation
from core.protocols.serialize import checkpoint_json, state_json, values_json
from core.registry import assistants
from core.registry.assistants import ResolvedAssistant
from core.registry.specs import AgentSpec
from core.runtime.graph import agent_node
from core.runtime.handoffs import record_switch
from core.runtime.service import AgentRuntime

# The key in a conversation's metadata naming the agent the client asked for last.
ASSISTANT_KEY = "assistant_id"
MERGE_METADATA_SQL = text(
    "UPDATE conversations SET context_data = context_data || CAST(:meta AS jsonb) WHERE id = :id"
)
TRY_TURN_LOCK_SQL = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")


def resolve_assistant(
    runtime: AgentRuntime, principal: Principal, assistant_id: str
) -> ResolvedAssistant:
    """The agent (and its version) a run of ``assistant_id`` uses: an assistant's
    UUID or an agent's name, in the registry this process runs now.

    Raises:
        NotFoundError: no such active assistant.
        ForbiddenError: an admin-only agent and the caller is not an admin.
    """
    return assistants.resolve_assistant(runtime.compiled().snapshot, principal, assistant_id)


def resolve_agent(runtime: AgentRuntime, principal: Principal, name: str) -> AgentSpec:
    """The spec of :func:`resolve_assistant` (an assistant id or OpenAI model name)."""
    return resolve_assistant(runtime, principal, name).spec


def agent_of_node(node: str, current_agent: str) -> str:
    """The agent a graph node acts for (the tools node acts for the current agent)."""
    return node.removeprefix("agent.") if node.startswith("agent.") else current_agent


def thread_config(thread_id: uuid.UUID | str, checkpoint_id: str | None = None) -> Any:
    configurable: dict[str, Any] = {"thread_id": str(thread_id)}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def thread_json(
    runtime: AgentRuntime, row: Row[Any], *, busy: bool, values: bool = True
) -> dict[str, Any]:
    """A ``Thread``: status is ``busy`` during a run, ``interrupted`` while a turn waits
    for a person (``interrupts`` by task id), ``error`` when a turn was cut short (it
    is completed by the next run), else ``idle``."""
    state: dict[str, Any] = {}
    if values:
        state = values_json(runtime.compiled().graph.get_state(thread_config(row.id)).values)
    return {
        "thread_id": str(row.id),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.last_activity.isoformat(),
        "metadata": row.context_data,
        "status": thread_status(row, busy),
        "values": state,
        "interrupts": interrupts_by_task(row.pending_interrupts),
    }


def thread_status(row: Row[Any], busy: bool) -> str:
    if busy:
        return "busy"
    if row.pending_interrupts is not None:
        return "interrupted"
    return "error" if row.turn_pending else "idle"


def interrupts_by_task(pending: list[dict[str, Any]] | None) -> dict[str, list[dict[str, Any]]]:
    """A paused conversation's interrupts as a ``Thread`` shows them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for item in pending or []:
        out.setdefault(item["task"], []).append({"value": item["value"], "id": item["id"]})
    return out


def choose_agent(conn: Connection, conversation: Row[Any], requested: str) -> None:
    """Point the conversation at ``requested`` when the client asks for another agent
    than last time; otherwise its current agent (moved by handoffs) goes on."""
    metadata = dict(conversation.context_data or {})
    last = metadata.get(ASSISTANT_KEY, conversation.current_agent)
    if requested == last:
        return
    if requested != conversation.current_agent:
        record_switch(
            conn, conversation.id, conversation.current_agent, requested, "requested by the client"
        )
    metadata[ASSISTANT_KEY] = requested
    conn.execute(
        update(Conversation).where(Conversation.id == conversation.id).values(context_data=metadata)
    )


def merge_metadata(conn: Connection, conversation_id: uuid.UUID, metadata: dict[str, Any]) -> None:
    """Add keys to a conversation's metadata (JSON merge at the top level)."""
    conn.execute(MERGE_METADATA_SQL, {"id": conversation_id, "meta": json.dumps(metadata)})


def input_text(graph_input: Any) -> str | None:
    """The user's message of a run's ``input`` (``{"messages": [one human message]}``).

    Raises:
        ValidationFailed: anything else (several messages, other state keys, non-text).
    """
    if graph_input is None:
        return None
    if not isinstance(graph_input, dict):
        raise ValidationFailed("input: must be an object like {'messages': [...]}")
    extra = sorted(set(graph_input) - {"messages"})
    if extra:
        raise ValidationFailed(f"input.{extra[0]}: not supported; send input.messages only")
    raw = graph_input.get("messages") or []
    if isinstance(raw, (dict, str)):
        raw = [raw]
    try:
        messages = convert_to_messages(raw)
    except (ValueError, NotImplementedError) as exc:
        raise ValidationFailed(f"input.messages: {exc}") from None
    if len(messages) != 1 or not isinstance(messages[0], HumanMessage):
        raise ValidationFailed(
            "input.messages: send exactly one user message per run (the thread keeps history)"
        )
    return plain_text(messages[0], "input.messages")


def plain_text(message: BaseMessage, where: str) -> str:
    if isinstance(message.content, list):
        for block in message.content:
            kind = block.get("type") if isinstance(block, dict) else "text"
            if kind != "text":
                raise ValidationFailed(f"{where}: content blocks of type {kind!r} not supported")
    content = message.text.strip()
    if not content:
        raise ValidationFailed(f"{where}: the message is empty")
    return content


def append_messages(
    runtime: AgentRuntime,
    principal: Principal,
    conversation_id: uuid.UUID,
    raw_messages: list[Any],
    as_node: str | None = None,
    checkpoint_id: str | None = None,
) -> dict[str, Any]:
    """Add messages to a thread's state and to its stored messages, as ``as_node``.

    Used by ``POST /threads/{id}/state`` and to seed an OpenAI request's history.
    With ``checkpoint_id`` the messages are added to the state at that checkpoint: a
    fork, which becomes the thread's current state (the stored messages keep every
    message, like a log).

    Returns:
        The new checkpoint (``{"checkpoint": {...}}``).

    Raises:
        ConflictError: a turn of the conversation is running.
        NotFoundError: no such checkpoint.
        ValidationFailed: messages that cannot be converted, or an unknown node.
    """
    try:
        messages = convert_to_messages(raw_messages)
    except (ValueError, NotImplementedError) as exc:
        raise ValidationFailed(f"values.messages: {exc}") from None
    for message in messages:
        if not message.id:
            message.id = f"s-{uuid.uuid4()}"
    compiled = runtime.compiled()
    with runtime.db.engine.begin() as conn:
        conversation = get_conversation(conn, principal, conversation_id)
        key = f"agentry-turn:{conversation_id}"
        if not conn.execute(TRY_TURN_LOCK_SQL, {"key": key}).scalar_one():
            raise ConflictError("a turn of this conversation is running; retry when it ends")
        node = as_node or agent_node(conversation.current_agent)
        if node not in compiled.graph.nodes:
            raise ValidationFailed(f"as_node: no node {node!r} in the graph")
        # Writing as an agent is acting as it: the same rule as running it.
        resolve_agent(runtime, principal, agent_of_node(node, conversation.current_agent))
        at = thread_config(conversation_id, checkpoint_id)
        if checkpoint_id and runtime.saver.get_tuple(at) is None:
            raise NotFoundError(f"no checkpoint {checkpoint_id} on thread {conversation_id}")
        config = compiled.graph.update_state(at, {"messages": messages}, as_node=node)
        agent = conversation.current_agent
        rows = [
            r
            for r in (
                from_langchain(m, agent if isinstance(m, AIMessage) else None) for m in messages
            )
            if r is not None
        ]
        store_messages(conn, conversation_id, conversation.user_id, rows, track_turn=False)
    return {"checkpoint": checkpoint_json(config, str(conversation_id))}


def thread_state(
    runtime: AgentRuntime, thread_id: uuid.UUID, checkpoint_id: str | None = None
) -> dict[str, Any]:
    snapshot = runtime.compiled().graph.get_state(thread_config(thread_id, checkpoint_id))
    if checkpoint_id and snapshot.config is None:
        raise NotFoundError(f"no checkpoint {checkpoint_id} on thread {thread_id}")
    return state_json(snapshot, str(thread_id))
