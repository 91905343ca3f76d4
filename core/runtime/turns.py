"""Running one turn of a conversation, as a stream of events.

Semantics (crash safety):
- The user's message is stored (and indexed) before the graph runs; the graph
  then checkpoints every step in PostgreSQL (``durability="sync"``).
- Messages made by a step are stored right after the step. Their ids come from
  LangGraph's deterministic task ids, so a step that is re-run after a crash
  produces the same ids and the store replaces instead of duplicating.
- ``conversations.turn_pending`` is set with the user's message and cleared with
  the final answer, so only an interrupted turn pays for reading its checkpoint.
- A turn interrupted by a crash (or by all models failing) stays pending in its
  checkpoint. The next ``POST .../messages`` first completes it, then runs the
  new message; ``POST .../resume`` completes it alone. A turn cut off before its
  first checkpoint (its user message stored, nothing checkpointed) is run from that
  stored message then, so no user message stays unanswered. Messages the crash kept
  out of the table are written from the checkpoint then. Tools may run again
  when the crash hit while they ran (at-least-once).
- One turn at a time per conversation, across processes (advisory lock): a
  second concurrent request gets 409.
- A turn that pauses for a person (``interrupt()``, ``approve_tools``, a
  breakpoint) yields ``interrupt`` and records the interrupts in
  ``conversations.pending_interrupts`` (the turn stays pending). It goes on only
  with a :class:`TurnControl` (``resume``/``update``/``goto``); a new message
  meanwhile is refused (409), so no decision is silently dropped. A breakpoint
  (no interrupt values) also goes on without an answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig
from langgraph.types import StreamMode
from sqlalchemy import Connection, Label, Row, func, literal_column, text

from core.auth.users import Principal
from core.conversations.messages import (
    NewMessage,
    from_langchain,
    store_messages,
    stored_ids,
    unanswered_message,
)
from core.conversations.store import get_conversation
from core.errors import (
    ConflictError,
    DecisionConflict,
    ModelUnavailableError,
    ValidationFailed,
)
from core.observability.turns import observed_turn
from core.registry.snapshot import FINGERPRINT_EXPR
from core.runtime.context import TurnContext
from core.runtime.control import (
    TurnControl,
    admit,
    command,
    pending_interrupts,
    update_messages,
)
from core.runtime.router import HOW_TO_CONFIGURE
from core.runtime.service import AgentRuntime, CompiledRegistry

# Read with the conversation, in one round trip: the turn lock (taken only when the
# caller may see the conversation) and the registry fingerprint.
MARK: Label[Any] = literal_column(FINGERPRINT_EXPR).label("mark")
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"
SET_INTERRUPTS_SQL = text(
    "UPDATE conversations SET pending_interrupts = CAST(:interrupts AS jsonb),"
    " turn_pending = turn_pending OR :paused WHERE id = :id"
)


@dataclass
class TurnEvent:
    """``token``, ``message``, ``tool_call``, ``tool_result``, ``handoff``, ``resumed``,
    ``interrupt`` (the turn paused: ``interrupts`` with id, value, node), ``final``
    (and ``error``, made by the HTTP layer)."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)


@observed_turn
def run_turn(
    runtime: AgentRuntime,
    principal: Principal,
    conversation_id: uuid.UUID,
    content: str | None,
    *,
    stream_tokens: bool = False,
    raw: bool = False,
    control: TurnControl | None = None,
    message_id: str | None = None,
    graph_modes: Sequence[str] = (),
) -> Iterator[TurnEvent]:
    """Run one turn (or, with ``content`` None, only complete a pending one).

    Args:
        runtime: the process's runtime.
        principal: the caller (owner of the conversation, or an admin).
        conversation_id: the conversation (= thread id).
        content: the user's message.
        stream_tokens: also yield ``token`` events while models answer.
        raw: also yield the LangChain objects for protocol adapters (Agent Protocol):
            ``input`` (the human message), ``step`` (node and state update, before the
            step's other events) and ``chunk`` (message chunk and its metadata).
        control: resume a paused turn (``resume``, ``update``, ``goto``) and/or pause
            this one at breakpoints.
        graph_modes: with ``raw``, LangGraph stream modes passed through as ``graph``
            events (``{"mode": ..., "chunk": ...}``): ``tasks``, ``checkpoints``, ``debug``.

    Yields:
        Events; the last one is ``final`` with every message stored by this call.

    Raises:
        NotFoundError: not a conversation of the caller.
        ConflictError: another turn of this conversation is running.
        DecisionConflict: a message while the conversation waits for a decision; a
            resume while it does not.
        ValidationFailed: a control naming unknown nodes or interrupts, or a bad answer.
        ModelUnavailableError: no usable model (nothing is stored then).
    """
    key = f"agentry-turn:{conversation_id}"
    with runtime.db.engine.connect() as conn:
        conversation = get_conversation(
            conn,
            principal,
            conversation_id,
            extra=(func.pg_try_advisory_lock(func.hashtextextended(key, 0)).label("got"), MARK),
        )
        if not conversation.got:
            conn.rollback()
            raise ConflictError(
                "a turn of this conversation is already running; retry when it ends"
            )
        try:
            # The turn's reads and writes share the lock's connection.
            if not runtime.router.has_usable(conn, conversation.user_id):
                raise ModelUnavailableError(HOW_TO_CONFIGURE)
            compiled = runtime.compiled(conn, conversation.mark)
            # The session lock outlives this transaction, which _turn ends with its first
            # write (usually the user's message): one transaction fewer per turn.
            yield from _turn(
                runtime,
                conn,
                compiled,
                principal,
                conversation,
                content,
                stream_tokens,
                raw,
                control or TurnControl(),
                message_id,
                tuple(graph_modes) if raw else (),
            )
        finally:
            conn.rollback()
            _unlock(conn, key)


def _unlock(conn: Connection, key: str) -> None:
    """Release the turn lock in one round trip (autocommit: no BEGIN/COMMIT around it)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.autocommit = True
    try:
        dbapi.execute(UNLOCK_SQL, (key,))
    finally:
        dbapi.autocommit = False


def _turn(
    runtime: AgentRuntime,
    conn: Connection,
    compiled: CompiledRegistry,
    principal: Principal,
    conversation: Row[Any],
    content: str | None,
    stream_tokens: bool,
    raw: bool,
    control: TurnControl,
    message_id: str | None = None,
    graph_modes: tuple[str, ...] = (),
) -> Iterator[TurnEvent]:
    conversation_id = conversation.id
    pending: list[dict[str, Any]] | None = conversation.pending_interrupts
    admit(control, pending, content, set(compiled.graph.nodes))
    resume_messages = update_messages(control)
    turn = TurnContext(
        runtime.db, runtime.settings, principal, conversation_id, conversation.user_id
    )
    config: RunnableConfig = {"configurable": {"thread_id": str(conversation_id)}}
    drive = _Driver(conn, compiled, turn, config, stream_tokens, conversation, control)
    drive.raw = raw
    drive.graph_modes = graph_modes

    if conversation.turn_pending or control.is_command:
        conn.commit()  # no transaction stays open while the graph runs
        # The last turn did not finish (crash, every model failed, or a pause): its
        # checkpoint says where it stopped. Messages kept out of the table come first.
        state = compiled.graph.get_state(config)
        messages: list[BaseMessage] = list((state.values or {}).get("messages", []))
        if conversation.turn_pending and len(messages) != conversation.messages_count:
            drive.store(messages, conversation.current_agent)
        if pending is not None:
            # Cleared before going on: a crash from here is an ordinary pending turn (the
            # checkpoint keeps the answer, or the interrupt is raised and recorded again).
            drive.set_interrupts(None)
        if control.is_command:
            if raw:
                for message in resume_messages:
                    yield TurnEvent("input", {"message": message, "agent": drive.agent})
            for row in drive.store(resume_messages, None):
                yield TurnEvent("message", row)
            yield TurnEvent("resumed", {"pending": list(state.next), "command": True})
            yield from drive.run(command(control, resume_messages, drive.agent))
        elif state.next:
            yield TurnEvent("resumed", {"pending": list(state.next)})
            yield from drive.run(None)
        else:
            # Failed before its first checkpoint: the stored user message is run now.
            orphan = unanswered_message(conn, conversation_id, {str(m.id) for m in messages})
            conn.commit()
            if orphan is not None:
                yield TurnEvent("resumed", {"pending": [f"agent.{drive.agent}"]})
                yield from drive.run({"messages": [orphan], "agent": drive.agent})
    if content is not None and drive.interrupts is not None:
        # Completing the unfinished turn stopped on a question: the message is not run.
        raise DecisionConflict(
            "the unfinished turn now waits for a decision: resume it, then send the message again"
        )
    if content is not None:
        agent = drive.agent
        if agent not in compiled.snapshot.agents:
            raise ValidationFailed(f"agent {agent!r} of this conversation is not active any more")
        human = HumanMessage(content, id=message_id or f"u-{uuid.uuid4()}")
        if raw:
            yield TurnEvent("input", {"message": human, "agent": agent})
        for row in drive.store([human], agent):
            yield TurnEvent("message", row)
        yield from drive.run({"messages": [human], "agent": agent})
    conn.commit()
    yield TurnEvent(
        "final",
        {
            "messages": drive.stored,
            "current_agent": drive.agent,
            "messages_count": drive.messages_count,
            "interrupts": drive.interrupts,
        },
    )


class _Driver:
    """Streams the graph and stores each step's messages as soon as the step ends."""

    def __init__(
        self,
        conn: Connection,
        compiled: CompiledRegistry,
        turn: TurnContext,
        config: RunnableConfig,
        stream_tokens: bool,
        conversation: Row[Any],
        control: TurnControl,
    ) -> None:
        self.conn = conn  # the turn's own connection (it holds the turn lock)
        self.compiled = compiled
        self.turn = turn
        self.config = config
        self.stream_tokens = stream_tokens
        self.stored: list[dict[str, Any]] = []
        self.agent: str = str(conversation.current_agent)
        self.messages_count: int = conversation.messages_count
        self.raw = False  # also yield LangChain objects (see run_turn)
        self.graph_modes: tuple[str, ...] = ()  # passed through as "graph" events
        self.control = control
        self.interrupts: list[dict[str, Any]] | None = None  # set when the turn pauses

    def set_interrupts(self, interrupts: list[dict[str, Any]] | None) -> None:
        """Record (or clear) what the conversation waits on, in its own transaction."""
        self.conn.execute(
            SET_INTERRUPTS_SQL,
            {
                "id": self.turn.conversation_id,
                "interrupts": None if interrupts is None else json.dumps(interrupts, default=str),
                "paused": interrupts is not None,
            },
        )
        self.conn.commit()

    def store(self, messages: list[BaseMessage], agent: str | None) -> list[dict[str, Any]]:
        """Store a step's messages in one transaction of the turn's connection."""
        if not messages:
            return []
        conn = self.conn
        known = stored_ids(conn, self.turn.conversation_id) if len(messages) > 1 else set()
        rows: list[NewMessage] = [
            m for m in (from_langchain(msg, agent) for msg in messages) if m is not None
        ]
        fresh = [m for m in rows if m.lc_id not in known]
        stored = store_messages(conn, self.turn.conversation_id, self.turn.user_id, fresh)
        conn.commit()  # an error before this rolls the step's messages back (run_turn)
        self.stored.extend(stored)
        self.messages_count += len(stored)
        return stored

    def run(self, graph_input: Any) -> Iterator[TurnEvent]:
        modes: list[StreamMode] = ["updates", "messages"] if self.stream_tokens else ["updates"]
        modes += cast(list[StreamMode], list(self.graph_modes))
        parts = self.compiled.graph.stream(
            graph_input,
            self.config,
            context=self.turn,
            stream_mode=modes,
            durability="sync",
            interrupt_before=self.control.interrupt_before or None,
            interrupt_after=self.control.interrupt_after or None,
        )
        paused = False
        # With a list of modes, each part is (mode, payload).
        for mode, chunk in cast(Iterator[tuple[str, Any]], parts):
            if mode in self.graph_modes:
                yield TurnEvent("graph", {"mode": mode, "chunk": chunk})
                continue
            if mode == "messages":
                message, meta = chunk
                node = str(meta.get("langgraph_node", ""))
                if self.raw:
                    yield TurnEvent("chunk", {"message": message, "metadata": meta})
                if (
                    isinstance(message, AIMessageChunk)
                    and node.startswith("agent.")
                    and message.text
                ):
                    yield TurnEvent("token", {"text": message.text, "agent": node[6:]})
                continue
            for node, update in (chunk or {}).items():
                paused = paused or node == "__interrupt__"
                if not isinstance(update, dict):
                    continue
                if self.raw:
                    yield TurnEvent("step", {"node": node, "update": update})
                yield from self._step(node, update)
        if paused:
            yield from self._pause()

    def _pause(self) -> Iterator[TurnEvent]:
        # The stream says it stopped; the checkpoint says on what (tasks and their ids).
        state = self.compiled.graph.get_state(self.config)
        if not state.next:
            return  # a breakpoint after the last step: the turn is complete
        interrupts = json.loads(json.dumps(pending_interrupts(state), default=str))
        self.set_interrupts(interrupts)
        self.interrupts = interrupts
        yield TurnEvent("interrupt", {"interrupts": interrupts})

    def _step(self, node: str, update: dict[str, Any]) -> Iterator[TurnEvent]:
        messages = list(update.get("messages", []))
        if update.get("agent"):
            self.agent = str(update["agent"])
        agent = node[6:] if node.startswith("agent.") else self.agent
        for message in messages:
            if isinstance(message, AIMessage):
                for call in message.tool_calls:
                    yield TurnEvent(
                        "tool_call", {"id": call["id"], "name": call["name"], "args": call["args"]}
                    )
            elif isinstance(message, ToolMessage):
                handoff = (
                    message.artifact.get("handoff") if isinstance(message.artifact, dict) else None
                )
                if handoff:
                    yield TurnEvent("handoff", handoff)
                yield TurnEvent(
                    "tool_result",
                    {"id": message.tool_call_id, "name": message.name, "content": message.text},
                )
        for row in self.store(messages, agent):
            yield TurnEvent("message", row)
