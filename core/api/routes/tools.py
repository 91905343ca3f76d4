"""``/v1/tools``: the tool registry (read: any user; write: admins)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Connection, select

from core.api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from core.errors import ConflictError, NotFoundError
from core.models import Tool
from core.registry.store import set_tool_active, upsert_tool
from core.registry.tools import describe_tool

router = APIRouter(prefix="/v1/tools", tags=["tools"])


class ToolBody(BaseModel):
    module_path: str = Field(max_length=500, description="tools/<name>.py")


class ToolPatch(BaseModel):
    is_active: bool


def _tool_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "description": row.description,
        "module_path": row.module_path,
        "schema": row.schema,
        "is_active": row.is_active,
        "version": row.version,
    }


def _get(conn: Connection, name: str) -> Any:
    row = conn.execute(select(Tool.__table__).where(Tool.name == name)).first()
    if row is None:
        raise NotFoundError(f"no tool named {name!r}")
    return row


@router.get("", summary="Tools")
def list_tools(user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
    rows = session.connection().execute(select(Tool.__table__).order_by(Tool.name))
    return [_tool_json(r) for r in rows]


@router.get("/{name}", summary="One tool with its input schema")
def get_tool(name: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return _tool_json(_get(session.connection(), name))


@router.post("", status_code=201, summary="Register a tool module of tools/ (admin)")
def create_tool(
    body: ToolBody, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    conn = session.connection()
    definition = describe_tool(settings.project_dir, body.module_path)
    if conn.execute(select(Tool.id).where(Tool.name == definition.name)).first():
        raise ConflictError(f"tool {definition.name!r} is already registered")
    upsert_tool(conn, definition, actor=admin.actor)
    return _tool_json(_get(conn, definition.name))


@router.post("/{name}/reload", summary="Re-read a tool's module and schema (admin)")
def reload_tool(
    name: str, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    conn = session.connection()
    row = _get(conn, name)
    upsert_tool(conn, describe_tool(settings.project_dir, row.module_path), actor=admin.actor)
    return _tool_json(_get(conn, name))


@router.patch("/{name}", summary="Activate or deactivate a tool (admin)")
def patch_tool(name: str, body: ToolPatch, admin: AdminUser, session: SessionDep) -> dict[str, Any]:
    conn = session.connection()
    set_tool_active(conn, name, body.is_active, actor=admin.actor)
    return _tool_json(_get(conn, name))
