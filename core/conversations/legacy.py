"""The legacy schema, read into import conversations (core/conversations/importing.py).

The old system kept one row per session with its messages as JSON text, and the
agent state beside it::

    sessions(session_id, messages TEXT json, last_activity, created_at)
    agent_contexts(session_id, current_agent, agent_history TEXT json,
                   context_metadata TEXT json, created_at, last_switch_at, switch_count)

Messages are objects with ``role`` (``user``/``assistant``/``system``/``tool``, or
``human``/``ai``), ``content`` and optionally ``timestamp`` (ISO 8601 or Unix
seconds), ``speaker``/``name``, ``agent``, ``id`` and ``metadata``. ``agent_history``
is a list of agent names in the order they took over, or of objects with
``to_agent`` (or ``agent``), ``from_agent``, ``reason`` and ``timestamp``. A session
whose JSON does not parse or validate is skipped and reported; so is an
``agent_contexts`` row without its session (an orphan).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pydantic import ValidationError

from core.conversations.importing import ImportConversation, ImportReport, _errors
from core.errors import ValidationFailed

SESSIONS_SQL = (
    "SELECT s.session_id, s.messages, s.created_at, s.last_activity, c.current_agent, "
    "c.agent_history, c.context_metadata, c.created_at AS context_created_at, "
    "c.last_switch_at, c.switch_count, (c.session_id IS NOT NULL) AS has_context "
    "FROM sessions s LEFT JOIN agent_contexts c ON c.session_id = s.session_id "
    "ORDER BY s.created_at, s.session_id"
)
ORPHANS_SQL = (
    "SELECT c.session_id FROM agent_contexts c WHERE NOT EXISTS "
    "(SELECT 1 FROM sessions s WHERE s.session_id = c.session_id) ORDER BY c.session_id"
)
COUNT_SQL = "SELECT count(*) AS n FROM sessions"


def _libpq_url(url: str) -> str:
    # SQLAlchemy-style URLs name the driver; libpq does not know it.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def _stamp(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return value


def _json(raw: Any, what: str, default: Any) -> Any:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return default
    if not isinstance(raw, str):
        return raw  # a json/jsonb column already parsed
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValidationFailed(f"{what}: not valid JSON ({exc})") from None


def _messages(raw: Any) -> list[dict[str, Any]]:
    items = _json(raw, "messages", [])
    if not isinstance(items, list):
        raise ValidationFailed("messages: must be a JSON list")
    out = []
    for m in items:
        if not isinstance(m, dict):
            raise ValidationFailed("messages: every message must be a JSON object")
        extra = {
            k: v
            for k, v in m.items()
            if k not in {"id", "role", "content", "timestamp", "speaker", "name", "agent"}
            and k != "metadata"
        }
        msg: dict[str, Any] = {
            "role": m.get("role"),
            "content": m.get("content"),
            "metadata": {**(m.get("metadata") or {}), **extra},
        }
        for key in ("id", "agent"):
            if m.get(key) is not None:
                msg[key] = str(m[key])
        if m.get("timestamp") is not None:
            msg["timestamp"] = _stamp(m["timestamp"])
        if m.get("speaker") or m.get("name"):
            msg["speaker"] = m.get("speaker") or m.get("name")
        out.append(msg)
    return out


def _switches(raw: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
    history = _json(raw, "agent_history", [])
    if not isinstance(history, list):
        raise ValidationFailed("agent_history: must be a JSON list")
    out: list[dict[str, Any]] = []
    previous: str | None = None
    for entry in history:
        if isinstance(entry, str):
            switch: dict[str, Any] = {"from_agent": previous, "to_agent": entry}
        elif isinstance(entry, dict):
            switch = {
                "from_agent": entry.get("from_agent", previous),
                "to_agent": entry.get("to_agent") or entry.get("agent"),
                "reason": entry.get("reason"),
                "timestamp": _stamp(entry.get("timestamp") or entry.get("switched_at")),
            }
        else:
            raise ValidationFailed("agent_history: entries must be agent names or objects")
        switch.setdefault("timestamp", None)
        if switch["timestamp"] is None:
            switch["timestamp"] = row["context_created_at"]
        previous = switch["to_agent"]
        out.append(switch)
    if out and row["last_switch_at"] is not None and isinstance(history[-1], str):
        out[-1]["timestamp"] = row["last_switch_at"]
    return out


def _conversation(row: dict[str, Any], user: str) -> ImportConversation:
    meta = _json(row["context_metadata"], "context_metadata", {})
    if not isinstance(meta, dict):
        raise ValidationFailed("context_metadata: must be a JSON object")
    data = {
        "conversation": row["session_id"],
        "user": user,
        "agent": row["current_agent"],
        "created_at": row["created_at"],
        "metadata": {**meta, "imported_from": "legacy"},
        "messages": _messages(row["messages"]),
        "switches": _switches(row["agent_history"], row) if row["has_context"] else [],
    }
    return ImportConversation.model_validate(data)


def _connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    try:
        return psycopg.connect(_libpq_url(url), row_factory=dict_row)
    except psycopg.Error as exc:
        raise ValidationFailed(f"--from: cannot connect to the legacy database ({exc})") from None


def _not_legacy(exc: psycopg.Error) -> ValidationFailed:
    return ValidationFailed(
        f"--from: not a legacy database with sessions and agent_contexts ({exc})"
    )


def count_sessions(url: str) -> int:
    """How many sessions the legacy database holds (for the progress bar)."""
    with _connect(url) as conn:
        try:
            row = conn.execute(COUNT_SQL).fetchone()
        except psycopg.Error as exc:
            raise _not_legacy(exc) from None
        return int(row["n"]) if row else 0


def read_legacy(
    url: str, user: str, report: ImportReport
) -> Iterator[tuple[str, ImportConversation]]:
    """Sessions of the legacy database as import conversations owned by ``user``.

    Bad sessions and orphan contexts go to ``report``; the legacy database is only read.

    Raises:
        ValidationFailed: the database cannot be reached or lacks the legacy tables.
    """
    with _connect(url) as conn:
        try:
            for orphan in conn.execute(ORPHANS_SQL):
                report.skip(
                    f"agent_contexts {orphan['session_id']}", "orphan context: no such session"
                )
            rows = conn.execute(SESSIONS_SQL)
        except psycopg.Error as exc:
            raise _not_legacy(exc) from None
        for row in rows:
            where = f"session {row['session_id']}"
            try:
                yield where, _conversation(row, user)
            except ValidationFailed as exc:
                report.skip(where, exc.message)
            except ValidationError as exc:
                report.skip(where, _errors(exc))
