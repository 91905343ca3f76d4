"""Handoff tools: ``transfer_to_<agent>(reason)`` moves the conversation to another agent."""

from __future__ import annotations

import uuid

from langchain_core.tools import BaseTool, StructuredTool
from sqlalchemy import Connection, insert, update

from core.models import AgentSwitch, Conversation
from core.registry.specs import AgentSpec

PREFIX = "transfer_to_"


def handoff_tool(target: AgentSpec) -> BaseTool:
    """The tool a model calls to hand the conversation to ``target``."""

    def transfer(reason: str) -> str:
        return f"transferred to {target.name}"

    return StructuredTool.from_function(
        transfer,
        name=f"{PREFIX}{target.name}",
        description=(
            f"Hand the conversation over to the {target.name} agent"
            f" ({target.description or 'no description'}). Give the reason."
        ),
    )


def handoff_target(tool_name: str) -> str | None:
    return tool_name[len(PREFIX) :] if tool_name.startswith(PREFIX) else None


def record_switch(
    conn: Connection,
    conversation_id: uuid.UUID,
    from_agent: str | None,
    to_agent: str,
    reason: str | None,
) -> None:
    """An ``agent_switches`` row, and ``conversations.current_agent`` follows it."""
    conn.execute(
        insert(AgentSwitch).values(
            conversation_id=conversation_id, from_agent=from_agent, to_agent=to_agent, reason=reason
        )
    )
    conn.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(current_agent=to_agent)
    )
