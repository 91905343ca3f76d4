"""Search filters and the SQL ``WHERE`` clause they become (bound parameters only)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class SearchFilter:
    """Which index rows a search may return.

    Args:
        user_id: the owner to scope to; None searches every user's rows (admins).
        entity_type: only this kind of document.
        since / until: ``created_at`` bounds (inclusive / exclusive).
        metadata: JSON containment: every key must have this value in the row's metadata.
        context: True only the context views of conversational memory, False none of
            them (core/memory/conversational.py), None every row.
    """

    user_id: uuid.UUID | None = None
    entity_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    context: bool | None = None

    @property
    def is_empty(self) -> bool:
        return (
            self.user_id is None
            and self.entity_type is None
            and self.since is None
            and self.until is None
            and not self.metadata
            and self.context is None
        )

    def where(self) -> tuple[str, dict[str, Any]]:
        """The clause (``TRUE`` when empty) and its parameters."""
        parts: list[str] = []
        params: dict[str, Any] = {}
        if self.user_id is not None:
            parts.append("user_id = :f_user_id")
            params["f_user_id"] = self.user_id
        if self.entity_type is not None:
            parts.append("entity_type = :f_entity_type")
            params["f_entity_type"] = self.entity_type
        if self.since is not None:
            parts.append("created_at >= :f_since")
            params["f_since"] = self.since
        if self.until is not None:
            parts.append("created_at < :f_until")
            params["f_until"] = self.until
        if self.metadata:
            parts.append("metadata @> CAST(:f_metadata AS jsonb)")
            params["f_metadata"] = json.dumps(self.metadata)
        if self.context is not None:
            parts.append(("" if self.context else "NOT ") + "(metadata ? 'context')")
        return (" AND ".join(parts) or "TRUE"), params


def parse_metadata_value(raw: str) -> Any:
    """A query-string value as JSON when it parses as a JSON scalar, else the string.

    ``meta.count=3`` matches the number 3, ``meta.count="3"`` the string "3",
    ``meta.role=user`` the string "user".
    """
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return value if isinstance(value, str | int | float | bool) or value is None else raw
