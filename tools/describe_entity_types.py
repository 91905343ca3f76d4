"""Mechanic tool: the entity types, their fields and indexes (admins)."""

from __future__ import annotations

from core.mechanic import conversation
from core.runtime.context import current_turn


def describe_entity_types() -> str:
    """Describe every entity type the mechanic made: status, fields with types, indexes."""
    return conversation.describe_entities(current_turn())
