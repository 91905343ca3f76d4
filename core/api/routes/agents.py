"""``/v1/agents``: the agent registry (read: any user; write: admins)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import Connection, select

from core.api.deps import AdminUser, CurrentUser, SessionDep, SettingsDep
from core.errors import ConflictError, NotFoundError
from core.models import Agent
from core.registry.specs import AgentSpec, dump_agent, parse_agent
from core.registry.store import active_names, check_references, deactivate_agent, upsert_agent
from core.registry.sync import sync_registry

router = APIRouter(prefix="/v1/agents", tags=["agents"])


class AgentBody(BaseModel):
    name: str = Field(max_length=63)
    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(max_length=20000)
    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    handoffs: list[str] = Field(default_factory=list)
    admin_only: bool = False
    approve_tools: list[str] = Field(default_factory=list)


class AgentUpdate(BaseModel):
    description: str = Field(default="", max_length=2000)
    system_prompt: str = Field(max_length=20000)
    model: str | None = None
    tools: list[str] = Field(default_factory=list)
    handoffs: list[str] = Field(default_factory=list)
    admin_only: bool = False
    approve_tools: list[str] = Field(default_factory=list)


def _agent_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "description": row.description,
        "config_path": row.config_path,
        "is_active": row.is_active,
        "version": row.version,
        "spec": row.spec,
        "updated_at": row.updated_at.isoformat(),
    }


def _get(conn: Connection, name: str) -> Any:
    row = conn.execute(select(Agent.__table__).where(Agent.name == name)).first()
    if row is None:
        raise NotFoundError(f"no agent named {name!r}")
    return row


def _file_agent(conn: Connection, name: str) -> Any:
    """An agent /v1/agents may change: assistants change through /assistants."""
    row = _get(conn, name)
    if row.assistant_id is not None:
        raise ConflictError(
            f"agent {name!r} is an assistant: change it at /assistants/{row.assistant_id}"
        )
    return row


def _save(conn: Connection, spec: AgentSpec, project_dir: Path, actor: str) -> None:
    tools, agents = active_names(conn)
    check_references([spec], tools, agents | {spec.name})
    upsert_agent(conn, spec, actor=actor)
    # The file is how the agent is versioned (the mechanic commits agents/).
    path = project_dir / "agents" / f"{spec.name}.yaml"
    path.write_text(dump_agent(spec), encoding="utf-8")


@router.get("", summary="Active agents")
def list_agents(user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
    rows = session.connection().execute(
        select(Agent.__table__).where(Agent.is_active.is_(True)).order_by(Agent.name)
    )
    return [_agent_json(r) for r in rows]


@router.get("/{name}", summary="One agent")
def get_agent(name: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return _agent_json(_get(session.connection(), name))


@router.post("", status_code=201, summary="Create an agent (admin)")
def create_agent(
    body: AgentBody, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    conn = session.connection()
    spec = parse_agent(body.model_dump(), where="agent")
    if conn.execute(select(Agent.id).where(Agent.name == spec.name)).first():
        raise ConflictError(f"agent {spec.name!r} exists; PUT /v1/agents/{spec.name} changes it")
    _save(conn, spec, settings.project_dir, admin.actor)
    return _agent_json(_get(conn, spec.name))


@router.put("/{name}", summary="Replace an agent's definition (admin)")
def update_agent(
    name: str, body: AgentUpdate, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    conn = session.connection()
    _file_agent(conn, name)
    spec = parse_agent({"name": name, **body.model_dump()}, where=f"agent {name!r}")
    _save(conn, spec, settings.project_dir, admin.actor)
    return _agent_json(_get(conn, name))


@router.delete("/{name}", status_code=204, summary="Deactivate an agent (admin)")
def delete_agent(name: str, admin: AdminUser, session: SessionDep) -> None:
    conn = session.connection()
    _file_agent(conn, name)
    deactivate_agent(conn, name, actor=admin.actor)


@router.post("/sync", summary="Sync agents and tools from the project's files (admin)")
def sync(admin: AdminUser, session: SessionDep, settings: SettingsDep) -> dict[str, Any]:
    report = sync_registry(session.connection(), settings.project_dir, actor=admin.actor)
    return {"changes": [{"kind": k, "name": n, "op": o} for k, n, o in report.changes]}
