"""Built-in tool: the current date and time."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def current_time(timezone: str = "UTC") -> str:
    """Tell the current date and time.

    Args:
        timezone: IANA time zone name such as Europe/Paris (default UTC).
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {timezone!r}; use an IANA name such as Europe/Paris"
    return datetime.now(zone).isoformat(timespec="seconds")
