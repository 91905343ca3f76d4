"""Mechanic tool: plan a schema or agent change (files, diff, checks) without applying it."""

from __future__ import annotations

from core.mechanic import conversation
from core.mechanic.agentchange import AnySpec
from core.runtime.context import current_turn


def propose_change(spec: AnySpec, instruction: str = "") -> str:
    """Propose one change and show its plan; nothing changes until it is applied.

    Args:
        spec: the change. Schema: add_entity, add_fields, add_index or retire_entity; field
            types: string (max_length), text, integer, bigint, numeric, boolean, date,
            timestamptz, jsonb, reference (references: entity), enum (values), string_list.
            Agents: add_agent or update_agent with agent (name), description, system_prompt,
            model, tools (registry tools, entity tools included) and handoffs (agents).
        instruction: the person's request in their words, kept with the change.
    """
    return conversation.propose(current_turn(), spec, instruction or None)
