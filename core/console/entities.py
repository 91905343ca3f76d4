"""Entity types the mechanic made and their records, as ``/v1/entities`` shows them."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response

from core.api.deps import DbDep
from core.api.routes import entities as rest
from core.console.web import PREFIX, ConsoleRoute, ConsoleUser, render
from core.mechanic import entities as records

router = APIRouter(prefix=f"{PREFIX}/entities", route_class=ConsoleRoute, include_in_schema=False)


@router.get("")
def index(request: Request, user: ConsoleUser, db: DbDep) -> Response:
    return render(request, "entities.html", types=rest.entity_types(request, db, user))


@router.get("/{entity}")
def records_page(
    entity: str,
    request: Request,
    user: ConsoleUser,
    db: DbDep,
    cursor: str | None = None,
    limit: int = Query(default=50, ge=1, le=records.MAX_PAGE),
) -> Response:
    kinds = {t["name"]: t for t in rest.entity_types(request, db, user)}
    page = rest.list_records(entity, request, db, user, limit=limit, cursor=cursor)
    kind = kinds.get(entity, {"name": entity, "fields": []})
    return render(
        request,
        "records.html",
        kind=kind,
        columns=[f["name"] for f in kind.get("fields", [])],
        items=page["items"],
        next_cursor=page["next_cursor"],
    )
