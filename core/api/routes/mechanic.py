"""``/v1/mechanic/changes``: plan, review, apply and roll back schema and agent changes
(admin)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, Field, model_validator

from core.api.deps import AdminUser, DbDep, RuntimeDep, SettingsDep
from core.mechanic import registry
from core.mechanic.agent import spec_from_instruction
from core.mechanic.agentchange import parse_change
from core.mechanic.apply import apply_change
from core.mechanic.live import EntityRegistry
from core.mechanic.plan import plan_change
from core.mechanic.rollback import rollback_change

router = APIRouter(prefix="/v1/mechanic", tags=["mechanic"])


class ChangeRequest(BaseModel):
    spec: dict[str, Any] | None = Field(default=None, description="a change spec (JSON)")
    instruction: str | None = Field(
        default=None, max_length=4000, description="plain words; the mechanic agent writes the spec"
    )

    @model_validator(mode="after")
    def _one(self) -> ChangeRequest:
        if (self.spec is None) == (self.instruction is None):
            raise ValueError("send exactly one of 'spec' or 'instruction'")
        return self


def _refresh(request: Request, db: Any) -> None:
    """This process goes live at once; the others hear the NOTIFY."""
    reg: EntityRegistry = request.app.state.entities
    with db.engine.connect() as conn:
        reg.refresh(conn)


@router.post("/changes", status_code=201, summary="Plan a change (files, SQL, lint, dry run)")
def create_change(
    body: ChangeRequest, admin: AdminUser, db: DbDep, settings: SettingsDep, runtime: RuntimeDep
) -> Any:
    if body.spec is not None:
        spec = parse_change(body.spec)
    else:
        assert body.instruction is not None
        spec = spec_from_instruction(runtime.router, settings, body.instruction, user_id=admin.id)
    change = plan_change(db, settings, spec, actor=admin.actor, instruction=body.instruction)
    return jsonable_encoder(change)


@router.get("/changes", summary="Changes, newest first")
def list_changes(
    admin: AdminUser,
    db: DbDep,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    with db.engine.connect() as conn:
        return jsonable_encoder(registry.list_changes(conn, status=status, limit=limit))


# An id or a unique prefix of one, as git takes commit ids.
ChangeRef = Annotated[
    str, Path(description="a change id, or a unique prefix of one", max_length=36)
]


def _resolve(db: Any, ref: str) -> uuid.UUID:
    with db.engine.connect() as conn:
        return registry.resolve_change_id(conn, ref)


@router.get("/changes/{change_id}", summary="One change with its plan")
def get_change(change_id: ChangeRef, admin: AdminUser, db: DbDep) -> Any:
    with db.engine.connect() as conn:
        return jsonable_encoder(
            registry.get_change(conn, registry.resolve_change_id(conn, change_id))
        )


@router.post("/changes/{change_id}/apply", summary="Apply a planned (or rolled-back) change")
def apply(
    change_id: ChangeRef, request: Request, admin: AdminUser, db: DbDep, settings: SettingsDep
) -> Any:
    change = apply_change(db, settings, _resolve(db, change_id), actor=admin.actor)
    _refresh(request, db)
    return jsonable_encoder(change)


@router.post("/changes/{change_id}/rollback", summary="Retire the entity, revert the commit")
def rollback(
    change_id: ChangeRef, request: Request, admin: AdminUser, db: DbDep, settings: SettingsDep
) -> Any:
    change = rollback_change(db, settings, _resolve(db, change_id), actor=admin.actor)
    _refresh(request, db)
    return jsonable_encoder(change)
