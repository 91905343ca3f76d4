"""The audit log: rows written (the one place that inserts them) and read back
(``agentry audit``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, insert, select

from core.models import AuditLog


def record_event(
    conn: Connection,
    *,
    action: str,
    actor: str,
    details: dict[str, Any],
    status: str = "succeeded",
    git_commit: str | None = None,
    git_branch: str | None = None,
) -> None:
    """Append one audit_log row in the caller's transaction (an event happens with it or
    not at all). ``details`` must never hold a secret: credential rows name, never value."""
    conn.execute(
        insert(AuditLog).values(
            action=action,
            actor=actor,
            status=status,
            details=details,
            git_commit=git_commit,
            git_branch=git_branch,
        )
    )


def record_change(
    conn: Connection, *, actor: str, kind: str, name: str, op: str, version: int, **details: Any
) -> None:
    """Append one ``registry_change`` audit row in the caller's transaction.

    Args:
        conn: the caller's connection.
        actor: ``system``, ``user:<id>``, ``mechanic``.
        kind: ``agent`` or ``tool``.
        name: the agent's or tool's name.
        op: ``created``, ``updated``, ``deactivated``, ``reactivated``; for assistants
            also ``set_latest`` and ``deleted``.
        version: the row's version after the change.
        details: anything else worth keeping (source file, ...).
    """
    record_event(
        conn,
        action="registry_change",
        actor=actor,
        details={"kind": kind, "name": name, "op": op, "version": version, **details},
    )


def query_audit(
    conn: Any,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit rows matching the filters, newest first (``GET /v1/audit``, ``agentry audit``)."""
    t = AuditLog.__table__
    stmt = select(t).order_by(t.c.created_at.desc()).limit(limit)
    if action:
        stmt = stmt.where(t.c.action == action)
    if actor:
        stmt = stmt.where(t.c.actor == actor)
    if since:
        stmt = stmt.where(t.c.created_at >= since)
    return [dict(r) for r in conn.execute(stmt).mappings()]
