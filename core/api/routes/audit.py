"""``/v1/audit``: the append-only audit log (admin)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.encoders import jsonable_encoder

from core.api.deps import AdminUser, DbDep
from core.registry.audit import query_audit

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
