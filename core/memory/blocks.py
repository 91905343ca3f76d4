"""Memory blocks: named, size-limited texts always placed in the agent's prompt.

A block belongs to a user and either to one agent (``persona`` of ``support``) or to
all of that user's agents (``agent`` = "", e.g. ``human``). Agents edit them with the
``memory_append`` / ``memory_replace`` tools, people through REST and the CLI; all go
through :func:`write_block`, which enforces the block's limit (an over-limit write is
refused with the limit, never truncated), keeps every version and writes an audit row.
Functions take the caller's connection and never commit.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import Connection, insert, text

from core.errors import NotFoundError, ValidationFailed
from core.models import AuditLog

DEFAULT_LIMIT = 2000
MAX_LIMIT = 20_000
LABEL = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
OPS = ("set", "append", "replace")

COLUMNS = "id, user_id, agent, label, value, char_limit, version, updated_at"
GET_SQL = text(
    f"SELECT {COLUMNS} FROM memory_blocks WHERE user_id = :uid AND agent = :agent "
    "AND label = :label FOR UPDATE"
)
LIST_SQL = text(
    f"SELECT {COLUMNS} FROM memory_blocks WHERE user_id = :uid "
    "AND (agent = '' OR agent = :agent OR CAST(:agent AS text) IS NULL) ORDER BY agent, label"
)
CREATE_SQL = text(
    "INSERT INTO memory_blocks (user_id, agent, label, value, char_limit) "
    f"VALUES (:uid, :agent, :label, :value, :limit) RETURNING {COLUMNS}"
)
UPDATE_SQL = text(
    "UPDATE memory_blocks SET value = :value, char_limit = :limit, version = version + 1, "
    f"updated_at = now() WHERE id = :id RETURNING {COLUMNS}"
)
VERSION_SQL = text(
    "INSERT INTO memory_block_versions (block_id, version, value, actor, op) "
    "VALUES (:id, :version, :value, :actor, :op)"
)
HISTORY_SQL = text(
    "SELECT version, value, actor, op, created_at FROM memory_block_versions "
    "WHERE block_id = :id ORDER BY version"
)


def block_json(row: Any) -> dict[str, Any]:
    return {
        "label": row.label,
        "agent": row.agent or None,
        "value": row.value,
        "limit": row.char_limit,
        "chars": len(row.value),
        "version": row.version,
        "updated_at": row.updated_at.isoformat(),
    }


def _check(label: str, limit: int | None) -> None:
    if not LABEL.match(label):
        raise ValidationFailed(
            f"label: lowercase letters, digits and _, starting with a letter (got {label!r})"
        )
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit: between 1 and {MAX_LIMIT} characters (got {limit})")


def _within(value: str, limit: int) -> None:
    if "\x00" in value:
        raise ValidationFailed("value: must not contain NUL bytes")
    if len(value) > limit:
        raise ValidationFailed(
            f"value: {len(value)} characters exceed the block's limit of {limit}; "
            "shorten it (nothing was written)"
        )


def list_blocks(
    conn: Connection, user_id: uuid.UUID, agent: str | None = None
) -> list[dict[str, Any]]:
    """The user's blocks an agent sees (shared ones and its own); every block if None."""
    return [block_json(r) for r in conn.execute(LIST_SQL, {"uid": user_id, "agent": agent})]


def write_block(
    conn: Connection,
    user_id: uuid.UUID,
    label: str,
    *,
    op: str,
    actor: str,
    agent: str | None = None,
    value: str = "",
    old: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Set, append to or replace within a block; creates it on ``set``.

    Args:
        conn: the caller's transaction.
        user_id: the block's owner.
        label: the block's name (``human``, ``persona``, ``notes``...).
        op: ``set`` (the whole value), ``append`` (a new line) or ``replace`` (``old`` → ``value``).
        actor: who writes (``user:<id>``, ``agent:<name>``), kept with the version.
        agent: the agent the block belongs to; None: shared by all the user's agents.
        value: the new value, the text to append, or the replacement.
        old: for ``replace``: the exact text to replace (must occur).
        limit: the block's size limit in characters (``set`` only; default the current
            one or :data:`DEFAULT_LIMIT`).

    Raises:
        ValidationFailed: bad label/limit, over the limit, ``old`` not found.
        NotFoundError: append/replace on a block that does not exist.
    """
    _check(label, limit)
    if op not in OPS:
        raise ValidationFailed(f"op: one of {', '.join(OPS)} (got {op!r})")
    key = {"uid": user_id, "agent": agent or "", "label": label}
    row = conn.execute(GET_SQL, key).first()
    if row is None and op != "set":
        raise NotFoundError(f"no memory block {label!r}")
    current = row.value if row is not None else ""
    cap = limit or (row.char_limit if row is not None else DEFAULT_LIMIT)
    if op == "append":
        new = f"{current}\n{value}" if current else value
    elif op == "replace":
        if not old or old not in current:
            raise ValidationFailed(f"old: the text to replace does not occur in {label!r}")
        new = current.replace(old, value, 1)
    else:
        new = value
    _within(new, cap)
    if row is None:
        row = conn.execute(CREATE_SQL, {**key, "value": new, "limit": cap}).one()
    else:
        row = conn.execute(UPDATE_SQL, {"id": row.id, "value": new, "limit": cap}).one()
    conn.execute(
        VERSION_SQL, {"id": row.id, "version": row.version, "value": new, "actor": actor, "op": op}
    )
    conn.execute(
        insert(AuditLog).values(
            action="memory_block_edit",
            actor=actor,
            status="succeeded",
            details={
                "user_id": str(user_id),
                "agent": agent,
                "label": label,
                "op": op,
                "version": row.version,
                "chars": len(new),
            },
        )
    )
    return block_json(row)


def block_history(
    conn: Connection, user_id: uuid.UUID, label: str, agent: str | None = None
) -> list[dict[str, Any]]:
    """Every version of a block, oldest first."""
    row = conn.execute(GET_SQL, {"uid": user_id, "agent": agent or "", "label": label}).first()
    if row is None:
        raise NotFoundError(f"no memory block {label!r}")
    return [
        {
            "version": r.version,
            "value": r.value,
            "actor": r.actor,
            "op": r.op,
            "created_at": r.created_at.isoformat(),
        }
        for r in conn.execute(HISTORY_SQL, {"id": row.id})
    ]


def prompt_section(blocks: list[dict[str, Any]]) -> str:
    """The blocks as the system prompt shows them (empty when there are none)."""
    if not blocks:
        return ""
    parts = [
        f'<memory_block label="{b["label"]}" chars="{b["chars"]}/{b["limit"]}">\n'
        f"{b['value']}\n</memory_block>"
        for b in blocks
    ]
    return (
        "\n\nMemory blocks (always here; edit them with memory_append / memory_replace):\n"
        + "\n".join(parts)
    )
