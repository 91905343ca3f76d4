"""NUL characters: PostgreSQL ``text`` and ``jsonb`` cannot hold U+0000, so input
carrying one is refused with the place it was found, before anything stores it."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed

NUL = "\x00"


def find_nul(value: Any, where: str) -> str | None:
    """The dotted path of the first string (key or value) in ``value`` holding a NUL.

    Args:
        value: decoded JSON (dicts, lists, strings, numbers) or a plain string.
        where: the path of ``value`` itself.

    Returns:
        The path, or None when there is no NUL.
    """
    if isinstance(value, str):
        return where if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str) and NUL in key:
                return path.replace(NUL, "\\u0000")
            found = find_nul(item, path)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_nul(item, f"{where}.{index}" if where else str(index))
            if found is not None:
                return found
    return None


def reject_nul(value: Any, where: str) -> None:
    """Raise :class:`ValidationFailed` naming where ``value`` holds a NUL character."""
    found = find_nul(value, where)
    if found is not None:
        raise ValidationFailed(f"{found}: NUL characters (\\u0000) are not allowed")
