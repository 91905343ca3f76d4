"""Mechanic tool: apply a proposed change once the person approves its plan."""

from __future__ import annotations

from core.mechanic import conversation
from core.runtime.context import current_turn


def apply_change(change_id: str) -> str:
    """Apply a change proposed in this conversation; the person is shown the plan and decides.

    Args:
        change_id: the id propose_change returned.
    """
    return conversation.apply(current_turn(), change_id)
