"""Agent Protocol runs: checked at once, then queued as durable runs (:mod:`core.runs`).

A run is one turn of the runtime (:func:`core.runtime.turns.run_turn`, no second
agent loop), executed by a worker of any process. What a client could get wrong —
an unknown thread (404), an agent it may not use (403), no model configured (503),
a busy thread under ``reject`` (409), bad input (422) — is refused here, before
anything is queued, as a plain HTTP error.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Row

from core.auth.users import Principal
from core.conversations.store import create_conversation, get_conversation
from core.errors import ModelUnavailableError, ValidationFailed
from core.limits.buckets import take_turn
from core.protocols.control import run_input
from core.protocols.threads import ASSISTANT_KEY, choose_agent, resolve_assistant
from core.runs import create_run
from core.runtime.control import TurnControl, admit
from core.runtime.router import HOW_TO_CONFIGURE
from core.runtime.service import AgentRuntime

CHANNEL = "agent-protocol"


def start_run(
    runtime: AgentRuntime,
    principal: Principal,
    thread_id: uuid.UUID | None,
    assistant_id: str,
    graph_input: Any,
    **options: Any,
) -> Row[Any]:
    """:func:`queue_run` in a transaction of its own, counted against the caller's turn
    rate (a cron's runs are not: they were allowed when the cron was made)."""
    take_turn(runtime.db, principal, runtime.settings)
    with runtime.db.engine.begin() as conn:
        return queue_run(conn, runtime, principal, thread_id, assistant_id, graph_input, **options)


def queue_run(
    conn: Connection,
    runtime: AgentRuntime,
    principal: Principal,
    thread_id: uuid.UUID | None,
    assistant_id: str,
    graph_input: Any,
    *,
    stream_mode: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    multitask_strategy: str = "reject",
    on_completion: str | None = None,
    control: TurnControl | None = None,
    webhook: str | None = None,
) -> Row[Any]:
    """Check and queue a run (``thread_id`` None: a stateless run on a new thread), in
    the caller's transaction (a cron's tick queues its run with the tick's claim).

    Returns:
        The run's row.

    Raises:
        NotFoundError, ForbiddenError, ModelUnavailableError, ConflictError,
        ValidationFailed: the refusals listed in the module docstring.
    """
    content = run_input(graph_input, control)
    assistant = resolve_assistant(runtime, principal, assistant_id)
    spec = assistant.spec
    if thread_id is None:
        if content is None:
            raise ValidationFailed("input: a stateless run needs a user message")
        row = create_conversation(
            conn,
            principal,
            spec.name,
            metadata={"graph_id": assistant.graph_id, ASSISTANT_KEY: spec.name, "stateless": True},
            channel=CHANNEL,
        )
    else:
        row = get_conversation(conn, principal, thread_id)
        # A message or resume that does not fit the thread's pause is refused now.
        nodes = set(runtime.compiled(conn).graph.nodes)
        admit(control or TurnControl(), row.pending_interrupts, content, nodes)
        choose_agent(conn, row, spec.name)
    if not runtime.router.has_usable(conn, row.user_id):
        raise ModelUnavailableError(HOW_TO_CONFIGURE)
    return create_run(
        conn,
        principal=principal,
        thread_id=row.id,
        assistant_id=assistant.assistant_id,  # as the client named it
        content=content,
        graph_input=graph_input,
        stream_mode=stream_mode,
        metadata=metadata,
        multitask_strategy=multitask_strategy,
        stateless=thread_id is None,
        on_completion=on_completion,
        control=control,
        webhook=webhook,
    )
