"""``/v1/audit``: the append-only audit log (admin)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder
from sqlalchemy import select

from core.api.deps import AdminUser, DbDep
from core.models import AuditLog

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", summary="Audit log entries, newest first (admin)")
def audit(
    admin: AdminUser,
    db: DbDep,
    action: str | None = None,
    actor: str | None = None,
    since: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return jsonable_encoder(
            query_audit(conn, action=action, actor=actor, since=since, limit=limit)
        )


def query_audit(
    conn: Any,
    *,
    action: str | None = None,
    actor: str | None = None,
    since: dt.datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Audit rows matching the filters, newest first (also used by ``agentry audit``)."""
    t = AuditLog.__table__
    stmt = select(t).order_by(t.c.created_at.desc()).limit(limit)
    if action:
        stmt = stmt.where(t.c.action == action)
    if actor:
        stmt = stmt.where(t.c.actor == actor)
    if since:
        stmt = stmt.where(t.c.created_at >= since)
    return [dict(r) for r in conn.execute(stmt).mappings()]
