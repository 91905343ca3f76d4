"""Mechanic tool: the schema changes, newest first, or one change with its audit rows."""

from __future__ import annotations

from core.mechanic import conversation
from core.runtime.context import current_turn


def list_changes(limit: int = 20, change_id: str = "") -> str:
    """List schema changes with status and commit; with change_id, that change's audit rows.

    Args:
        limit: how many changes, newest first.
        change_id: one change to show with its audit trail.
    """
    return conversation.list_changes(current_turn(), limit, change_id or None)
