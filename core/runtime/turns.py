"""Running one turn of a conversation, as a stream of events.

Semantics (crash safety):
- The user's message is stored (and indexed) before the graph runs; the graph
  then checkpoints every step in PostgreSQL (``durability="sync"``).
- Messages made by a step are stored right after the step. Their ids come from
  LangGraph's deterministic task ids, so a step that is re-run after a crash
  produces the same ids and the store replaces instead of duplicating.
- A turn interrupted by a crash (or by all models failing) stays pending in its
  checkpoint. The next ``POST .../messages`` first completes it, then runs the
  new message; ``POST .../resume`` completes it alone. Messages the crash kept
  out of the table are written from the checkpoint then. Tools may run again
  when the crash hit while they ran (at-least-once).
- One turn at a time per conversation, across processes (advisory lock): a
  second concurrent request gets 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from sqlalchemy import text

from core.auth.users import Principal
from core.conversations.messages import NewMessage, from_langchain, store_messages, stored_ids
from core.conversations.store import get_conversation
from core.errors import ConflictError, ModelUnavailableError, ValidationFailed
from core.runtime.context import TurnContext
from core.runtime.router import HOW_TO_CONFIGURE, usable_models
from core.runtime.service import AgentRuntime, CompiledRegistry

TRY_LOCK_SQL = text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))")
UNLOCK_SQL = text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))")


@dataclass
class TurnEvent:
    """``token``, ``message``, ``tool_call``, ``tool_result``, ``handoff``, ``resumed``,
    ``final`` (and ``error``, made by the HTTP layer)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


def run_turn(
    runtime: AgentRuntime,
    principal: Principal,
    conversation_id: uuid.UUID,
    content: str | None,
    *,
    stream_tokens: bool = False,
) -> Iterator[TurnEvent]:
    """Run one turn (or, with ``content`` None, only complete a pending one).

    Args:
        runtime: the process's runtime.
        principal: the caller (owner of the conversation, or an admin).
        conversation_id: the conversation (= thread id).
        content: the user's message.
        stream_tokens: also yield ``token`` events while models answer.

    Yields:
        Events; the last one is ``final`` with every message stored by this call.

    Raises:
        NotFoundError: not a conversation of the caller.
        ConflictError: another turn of this conversation is running.
        ModelUnavailableError: no usable model (nothing is stored then).
    """
    key = f"agentry-turn:{conversation_id}"
    with runtime.db.engine.connect() as lock_conn:
        got = lock_conn.execute(TRY_LOCK_SQL, {"key": key}).scalar_one()
        lock_conn.commit()  # the session lock outlives the transaction; no idle transaction
        if not got:
            raise ConflictError("a turn of this conversation is already running; retry when it ends")
        try:
            yield from _turn(runtime, principal, conversation_id, content, stream_tokens)
        finally:
            lock_conn.execute(UNLOCK_SQL, {"key": key})
            lock_conn.commit()


def _turn(
    runtime: AgentRuntime,
    principal: Principal,
    conversation_id: uuid.UUID,
    content: str | None,
    stream_tokens: bool,
) -> Iterator[TurnEvent]:
    with runtime.db.engine.connect() as conn:
        conversation = get_conversation(conn, principal, conversation_id)
        if not usable_models(conn, runtime.settings):
            raise ModelUnavailableError(HOW_TO_CONFIGURE)
    compiled = runtime.compiled()
    turn = TurnContext(runtime.db, runtime.settings, principal, conversation_id, conversation.user_id)
    config: RunnableConfig = {"configurable": {"thread_id": str(conversation_id)}}
    drive = _Driver(runtime, compiled, turn, config, stream_tokens)

    state = compiled.graph.get_state(config)
    messages: list[BaseMessage] = list((state.values or {}).get("messages", []))
    if len(messages) != conversation.messages_count:
        # A crash between a checkpoint and the message store: write what is missing.
        drive.store(messages, conversation.current_agent)
    if state.next:
        yield TurnEvent("resumed", {"pending": list(state.next)})
        yield from drive.run(None)
    if content is not None:
        agent = _current_agent(runtime, compiled, conversation_id, principal)
        human = HumanMessage(content, id=f"u-{uuid.uuid4()}")
        for row in drive.store([human], agent):
            yield TurnEvent("message", row)
        yield from drive.run({"messages": [human], "agent": agent})
    with runtime.db.engine.connect() as conn:
        after = get_conversation(conn, principal, conversation_id)
    yield TurnEvent(
        "final",
        {
            "messages": drive.stored,
            "current_agent": after.current_agent,
            "messages_count": after.messages_count,
        },
    )


def _current_agent(
    runtime: AgentRuntime, compiled: CompiledRegistry, conversation_id: uuid.UUID, principal: Principal
) -> str:
    with runtime.db.engine.connect() as conn:
        agent = get_conversation(conn, principal, conversation_id).current_agent
    if agent not in compiled.snapshot.agents:
        raise ValidationFailed(f"agent {agent!r} of this conversation is not active any more")
    return str(agent)


class _Driver:
    """Streams the graph and stores each step's messages as soon as the step ends."""

    def __init__(
        self,
        runtime: AgentRuntime,
        compiled: CompiledRegistry,
        turn: TurnContext,
        config: RunnableConfig,
        stream_tokens: bool,
    ) -> None:
        self.runtime = runtime
        self.compiled = compiled
        self.turn = turn
        self.config = config
        self.stream_tokens = stream_tokens
        self.stored: list[dict[str, Any]] = []

    def store(self, messages: list[BaseMessage], agent: str | None) -> list[dict[str, Any]]:
        if not messages:
            return []
        with self.runtime.db.engine.begin() as conn:
            known = stored_ids(conn, self.turn.conversation_id) if len(messages) > 1 else set()
            rows: list[NewMessage] = [
                m
                for m in (from_langchain(msg, agent) for msg in messages if str(msg.id) not in known)
                if m is not None
            ]
            stored = store_messages(conn, self.turn.conversation_id, self.turn.user_id, rows)
        self.stored.extend(stored)
        return stored

    def run(self, graph_input: dict[str, Any] | None) -> Iterator[TurnEvent]:
        modes = ["updates", "messages"] if self.stream_tokens else ["updates"]
        for mode, chunk in self.compiled.graph.stream(
            graph_input,
            self.config,
            context=self.turn,
            stream_mode=modes,  # type: ignore[arg-type]
            durability="sync",
        ):
            if mode == "messages":
                message, meta = chunk
                node = str(meta.get("langgraph_node", ""))
                if isinstance(message, AIMessageChunk) and node.startswith("agent.") and message.text:
                    yield TurnEvent("token", {"text": message.text, "agent": node[6:]})
                continue
            for node, update in (chunk or {}).items():
                if not isinstance(update, dict):
                    continue
                yield from self._step(node, update)

    def _step(self, node: str, update: dict[str, Any]) -> Iterator[TurnEvent]:
        messages = list(update.get("messages", []))
        agent = node[6:] if node.startswith("agent.") else update.get("agent")
        for message in messages:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    yield TurnEvent(
                        "tool_call", {"id": call["id"], "name": call["name"], "args": call["args"]}
                    )
            elif isinstance(message, ToolMessage):
                handoff = message.artifact.get("handoff") if isinstance(message.artifact, dict) else None
                if handoff:
                    yield TurnEvent("handoff", handoff)
                yield TurnEvent(
                    "tool_result",
                    {"id": message.tool_call_id, "name": message.name, "content": message.text},
                )
        for row in self.store(messages, agent):
            yield TurnEvent("message", row)
