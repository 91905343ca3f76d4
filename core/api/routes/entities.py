"""``/v1/entities/{entity}``: CRUD on the entity types the mechanic made, live without restart."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.encoders import jsonable_encoder

from core.api.deps import CurrentUser, DbDep
from core.auth.users import Principal
from core.mechanic import entities
from core.mechanic.live import EntityRegistry

router = APIRouter(prefix="/v1/entities", tags=["entities"])


def _live(request: Request, db: Any, name: str) -> entities.LiveEntity:
    reg: EntityRegistry = request.app.state.entities
    reg.ensure_loaded(db.engine)
    return reg.get(name)


def _owner(user: Principal) -> uuid.UUID | None:
    """Admins see every user's records; everyone else only their own."""
    return None if user.is_admin else user.id


@router.get("", summary="Active entity types and their fields")
def entity_types(request: Request, db: DbDep, user: CurrentUser) -> list[dict[str, Any]]:
    reg: EntityRegistry = request.app.state.entities
    reg.ensure_loaded(db.engine)
    return [
        {"name": e.name, "revision": e.revision, **e.defn.model_dump(mode="json")}
        for e in reg.all()
    ]


@router.post("/{entity}", status_code=201, summary="Create a record")
def create_record(
    entity: str,
    request: Request,
    db: DbDep,
    user: CurrentUser,
    body: Annotated[dict[str, Any], Body()],
) -> Any:
    ent = _live(request, db, entity)
    with db.engine.begin() as conn:
        row = entities.create(conn, ent, body, user_id=user.id)
    return jsonable_encoder(row)


@router.get("/{entity}", summary="Records, oldest first (cursor pagination)")
def list_records(
    entity: str,
    request: Request,
    db: DbDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=entities.MAX_PAGE)] = 50,
    cursor: str | None = None,
) -> Any:
    ent = _live(request, db, entity)
    with db.engine.connect() as conn:
        rows, next_cursor = entities.list_records(
            conn, ent, user_id=_owner(user), limit=limit, cursor=cursor
        )
    return jsonable_encoder({"items": rows, "next_cursor": next_cursor})


@router.get("/{entity}/{record_id}", summary="One record")
def get_record(
    entity: str, record_id: uuid.UUID, request: Request, db: DbDep, user: CurrentUser
) -> Any:
    ent = _live(request, db, entity)
    with db.engine.connect() as conn:
        return jsonable_encoder(entities.get(conn, ent, record_id, user_id=_owner(user)))


@router.patch("/{entity}/{record_id}", summary="Change some fields")
def update_record(
    entity: str,
    record_id: uuid.UUID,
    request: Request,
    db: DbDep,
    user: CurrentUser,
    body: Annotated[dict[str, Any], Body()],
) -> Any:
    ent = _live(request, db, entity)
    with db.engine.begin() as conn:
        row = entities.update_record(conn, ent, record_id, body, user_id=_owner(user))
    return jsonable_encoder(row)


@router.delete("/{entity}/{record_id}", status_code=204, summary="Soft-delete a record")
def delete_record(
    entity: str, record_id: uuid.UUID, request: Request, db: DbDep, user: CurrentUser
) -> Response:
    ent = _live(request, db, entity)
    with db.engine.begin() as conn:
        entities.soft_delete(conn, ent, record_id, user_id=_owner(user))
    return Response(status_code=204)
