"""The audit log (admins), filtered by action, actor and time, as ``GET /v1/audit``."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Query, Request, Response

from core.api.deps import DbDep, get_admin_user
from core.api.routes import audit as rest
from core.console.web import PREFIX, ConsoleRoute, ConsoleUser, render
from core.errors import ValidationFailed

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


def parse_time(name: str, raw: str | None) -> dt.datetime | None:
    """A form's date or date-time (empty: none); naive times are UTC."""
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{name}: an ISO 8601 date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@router.get("/audit")
def audit(
    request: Request,
    user: ConsoleUser,
    db: DbDep,
    action: str = Query(default="", max_length=100),
    actor: str = Query(default="", max_length=200),
    since: str = Query(default="", max_length=40),
    limit: int = Query(default=100, ge=1, le=500),
) -> Response:
    admin = get_admin_user(user)
    rows = rest.audit(
        admin,
        db,
        action=action or None,
        actor=actor or None,
        since=parse_time("since", since),
        limit=limit,
    )
    template = "audit_rows.html" if request.headers.get("hx-request") else "audit.html"
    return render(
        request, template, rows=rows, action=action, actor=actor, since=since, limit=limit
    )
