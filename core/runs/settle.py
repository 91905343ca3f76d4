"""What a cancelled run leaves behind on its thread (``interrupt`` or ``rollback``).

- interrupt: the thread keeps the state the run reached; messages the checkpoint has
  and the message table lacks (the step that was cut) are stored, and the turn is
  closed, so the next run starts from there with its own input (LangGraph's meaning).
  Only when the state ends on a tool call still unanswered does the turn stay
  pending: the next run then runs that step first, so no tool call dangles.
- rollback: the thread forks from the checkpoint it had before the run (LangGraph's
  ``__copy__`` update: a new latest checkpoint, the run's checkpoints stay in the
  history, nothing is deleted); the run's messages stay in the message log.
"""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.messages import BaseMessage, RemoveMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from sqlalchemy import Connection, text

from core.conversations.messages import from_langchain, store_messages, stored_ids
from core.protocols.threads import thread_config
from core.runtime.graph import TOOLS_NODE, agent_node

CHECKPOINT_OF_SQL = text("SELECT checkpoint_id FROM runs WHERE id = :id")
CLEAR_PENDING_SQL = text("UPDATE conversations SET turn_pending = false WHERE id = :id")
AGENT_SQL = text("SELECT current_agent, user_id FROM conversations WHERE id = :id")


def settle_cancelled(conn: Connection, graph: Any, run_id: uuid.UUID, action: str) -> None:
    """Leave the thread of a cancelled run as ``action`` says (caller's transaction)."""
    thread_id = conn.execute(text("SELECT thread_id FROM runs WHERE id = :id"), {"id": run_id})
    tid = thread_id.scalar_one()
    agent, owner = conn.execute(AGENT_SQL, {"id": tid}).one()
    before = conn.execute(CHECKPOINT_OF_SQL, {"id": run_id}).scalar()
    if action == "rollback" and before is not None:  # None: the run never started
        if before:
            graph.update_state(thread_config(tid, before), None, as_node="__copy__")
        else:  # the run was the thread's first: its state goes back to empty
            graph.update_state(
                thread_config(tid),
                {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES)]},
                as_node=agent_node(str(agent)),
            )
        conn.execute(CLEAR_PENDING_SQL, {"id": tid})
        return
    state = graph.get_state(thread_config(tid))
    messages: list[BaseMessage] = list((state.values or {}).get("messages", []))
    known = stored_ids(conn, tid)
    rows = [
        m
        for m in (from_langchain(msg, str(agent)) for msg in messages)
        if m is not None and m.lc_id not in known
    ]
    store_messages(conn, tid, owner, rows, track_turn=False)
    if TOOLS_NODE not in state.next:
        conn.execute(CLEAR_PENDING_SQL, {"id": tid})
