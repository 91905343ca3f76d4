"""``registry_change`` rows of the audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from core.models import AuditLog


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
    conn.execute(
        insert(AuditLog).values(
            action="registry_change",
            actor=actor,
            status="succeeded",
            details={"kind": kind, "name": name, "op": op, "version": version, **details},
        )
    )
