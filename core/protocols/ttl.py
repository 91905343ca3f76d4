"""Thread ttl: conversations whose ttl ran out are soft-deleted (``agentry prune``, the sweeper).

Kept apart from :mod:`core.protocols.thread_ops` so ``agentry prune`` needs only SQLAlchemy.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

EXPIRE_SQL = text(
    "UPDATE conversations SET deleted_at = now(), status = 'closed'"
    " WHERE ttl_minutes IS NOT NULL AND deleted_at IS NULL"
    " AND last_activity < now() - make_interval(secs => ttl_minutes * 60) RETURNING id"
)


def expire_threads(conn: Connection) -> list[uuid.UUID]:
    """Soft-delete the conversations whose ttl has run out (caller's transaction)."""
    return list(conn.execute(EXPIRE_SQL).scalars())
