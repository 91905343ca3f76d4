"""Opaque pagination cursors (base64 of a small JSON list)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from core.errors import ValidationFailed


def encode(*parts: Any) -> str:
    raw = json.dumps(list(parts), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list[Any]:
    """The parts of a cursor made by :func:`encode`.

    Raises:
        ValidationFailed: a cursor that was not produced by this API.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            "invalid cursor: pass back the next_cursor of a previous page"
        ) from None
    if not isinstance(parts, list) or len(parts) != arity:
        raise ValidationFailed("invalid cursor: pass back the next_cursor of a previous page")
    return parts
