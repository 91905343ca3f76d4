"""Mechanic tool: plan a schema change (files, diff, SQL, lint, dry run) without applying it."""

from __future__ import annotations

from core.mechanic import conversation
from core.mechanic.spec import ChangeSpec
from core.runtime.context import current_turn


def propose_change(spec: ChangeSpec, instruction: str = "") -> str:
    """Propose one schema change and show its plan; nothing changes until it is applied.

    Args:
        spec: the change: add_entity, add_fields, add_index or retire_entity. Field types:
            string (max_length), text, integer, bigint, numeric, boolean, date, timestamptz,
            jsonb, reference (references: entity), enum (values), string_list.
        instruction: the person's request in their words, kept with the change.
    """
    return conversation.propose(current_turn(), spec, instruction or None)
