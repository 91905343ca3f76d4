"""Mechanic tool: roll back an applied change once the person approves (data is kept)."""

from __future__ import annotations

from core.mechanic import conversation
from core.runtime.context import current_turn


def rollback_change(change_id: str) -> str:
    """Roll back an applied change (entity retired or fields hidden, data kept) after approval.

    Args:
        change_id: the change to roll back (see list_changes).
    """
    return conversation.rollback(current_turn(), change_id)
