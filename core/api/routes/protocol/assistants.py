"""``/assistants``: Agentry's agents as Agent Protocol assistants.

Agents defined by files are assistants whose id and graph id are the agent's
name (one version; they change through ``/v1/agents``). Assistants made here
get a UUID and keep every version (:mod:`core.registry.assistants`). Reading
follows :mod:`core.registry.access`; writing is for admins, like ``/v1/agents``.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from core.api.deps import AdminUser, CurrentUser, RuntimeDep, SessionDep
from core.auth.users import Principal
from core.errors import ConflictError, ForbiddenError, NotFoundError, ValidationFailed
from core.models import Agent
from core.protocols.threads import resolve_agent
from core.registry import assistants as store
from core.registry.access import may_use, usable_rows

router = APIRouter(prefix="/assistants", tags=["agent protocol"])

Json = dict[str, Any]


FIELD = Literal[
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
]


class AssistantSearch(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[FIELD] | None = None


class AssistantCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    graph_id: str = Field(max_length=100)
    assistant_id: str | None = Field(default=None, max_length=100)
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class AssistantPatch(BaseModel):
    model_config = ConfigDict(extra="allow")

    graph_id: str | None = Field(default=None, max_length=100)
    config: Json | None = None
    context: Json | None = None
    metadata: Json | None = None
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class VersionSearch(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: Json | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class LatestBody(BaseModel):
    version: int = Field(ge=1)


def reject_extra(body: BaseModel, where: str = "") -> None:
    """422 naming the first option Agentry does not support (never ignored silently)."""
    for name, value in (body.model_extra or {}).items():
        if value is not None:
            raise ValidationFailed(f"{where}{name}: option not supported by Agentry")


def assistant_json(row: Any) -> Json:
    """A file agent's row as an assistant (its version is the registry row's)."""
    spec = row.spec or {}
    return {
        "assistant_id": row.name,
        "graph_id": row.name,
        "name": row.name,
        "description": row.description,
        "config": {},
        "context": {},
        "metadata": {"model": spec.get("model"), "tools": spec.get("tools", [])},
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _made_json(row: Any) -> Json:
    """An assistant made through ``/assistants``, at its current version."""
    return {
        "assistant_id": str(row.assistant_id),
        "graph_id": row.graph_id,
        "name": row.name,
        "description": row.description,
        "config": row.config,
        "context": row.context,
        "metadata": row.metadata,
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def _version_json(row: Any) -> Json:
    return {
        "assistant_id": str(row.assistant_id),
        "graph_id": row.graph_id,
        "name": row.name,
        "description": row.description,
        "config": row.config,
        "context": row.context,
        "metadata": row.metadata,
        "version": row.version,
        "created_at": row.created_at.isoformat(),
    }


def _visible(conn: Connection, user: Principal) -> list[Json]:
    made = {r.agent: r for r in store.all_current(conn)}
    return [
        _made_json(made[r.name]) if r.name in made else assistant_json(r)
        for r in usable_rows(conn, user)
    ]


def _one(conn: Connection, user: Principal, assistant_id: str) -> Json:
    """One assistant the caller may use, by UUID or agent name.

    Raises:
        NotFoundError: none such.
        ForbiddenError: admin-only and the caller is not an admin.
    """
    parsed = store.parse_id(assistant_id)
    if parsed is not None:
        made = store.current(conn, parsed)
        found, spec = _made_json(made), made.spec
    else:
        row = conn.execute(
            select(Agent.__table__).where(
                Agent.name == assistant_id, Agent.is_active.is_(True), Agent.assistant_id.is_(None)
            )
        ).first()
        if row is None or not (row.spec or {}).get("system_prompt"):
            raise NotFoundError(f"no assistant {assistant_id!r}: see POST /assistants/search")
        found, spec = assistant_json(row), row.spec
    if not may_use(user, spec):
        raise ForbiddenError(f"assistant {assistant_id!r} is for admins")
    return found


def _made_id(conn: Connection, user: Principal, assistant_id: str) -> uuid.UUID:
    """The UUID of an assistant made here (file agents change through /v1/agents)."""
    found = _one(conn, user, assistant_id)
    parsed = store.parse_id(assistant_id)
    if parsed is None:
        raise ConflictError(
            f"assistant {found['assistant_id']!r} is defined by agents/{assistant_id}.yaml:"
            f" change it with PUT /v1/agents/{assistant_id}"
        )
    return parsed


@router.post("", summary="Create an assistant: a versioned agent on a graph (admin)")
def create(body: AssistantCreate, admin: AdminUser, session: SessionDep) -> Json:
    reject_extra(body)
    conn = session.connection()
    requested = body.assistant_id
    parsed = store.parse_id(requested) if requested else uuid.uuid4()
    if parsed is None:
        # A file agent's name: it exists already, or the id is not one Agentry makes.
        exists = conn.execute(
            select(Agent.id).where(Agent.name == requested, Agent.assistant_id.is_(None))
        ).first()
        if exists is None or requested != body.graph_id:
            raise ValidationFailed("assistant_id: must be a UUID (or omitted)")
        if body.if_exists == "raise":
            raise ConflictError(f"assistant {requested!r} exists")
        return _one(conn, admin, str(requested))
    config, context = store.settings_of(body.config or {}, body.context or {})
    fields = store.AssistantFields(
        graph_id=body.graph_id,
        name=body.name or "Untitled",
        description=body.description,
        config=config,
        context=context,
        metadata=body.metadata or {},
    )
    if not store.create_assistant(conn, parsed, fields, actor=admin.actor):
        if body.if_exists == "raise":
            raise ConflictError(f"assistant {str(parsed)!r} exists")
        return _one(conn, admin, str(parsed))
    return _made_json(store.current(conn, parsed))


@router.post("/search", summary="Assistants the caller may use")
def search(body: AssistantSearch, user: CurrentUser, session: SessionDep) -> list[Json]:
    reject_extra(body)
    wanted = body.metadata or {}
    found = [
        a
        for a in _visible(session.connection(), user)
        if (body.graph_id is None or a["graph_id"] == body.graph_id)
        and (body.name is None or body.name.lower() in a["name"].lower())
        and all(a["metadata"].get(k) == v for k, v in wanted.items())
    ]
    key = body.sort_by or "created_at"
    found.sort(key=lambda a: (a[key], a["assistant_id"]), reverse=body.sort_order == "desc")
    page = found[body.offset : body.offset + body.limit]
    if body.select:
        page = [{k: a[k] for k in body.select} for a in page]
    return page


@router.post("/count", summary="How many assistants match")
def count(body: AssistantSearch, user: CurrentUser, session: SessionDep) -> int:
    body.limit, body.offset = 1000, 0
    return len(search(body, user, session))


@router.get("/{assistant_id}", summary="One assistant, at its current version")
def get_one(assistant_id: str, user: CurrentUser, session: SessionDep) -> Json:
    return _one(session.connection(), user, assistant_id)


@router.patch("/{assistant_id}", summary="Change an assistant: a new version (admin)")
def patch(assistant_id: str, body: AssistantPatch, admin: AdminUser, session: SessionDep) -> Json:
    reject_extra(body)
    conn = session.connection()
    made = _made_id(conn, admin, assistant_id)
    store.update_assistant(conn, made, body.model_dump(exclude_none=True), actor=admin.actor)
    return _made_json(store.current(conn, made))


@router.delete("/{assistant_id}", status_code=204, summary="Delete an assistant (admin)")
def delete(
    assistant_id: str, admin: AdminUser, session: SessionDep, delete_threads: bool = False
) -> Response:
    if delete_threads:
        raise ValidationFailed("delete_threads: not supported; delete threads with DELETE /threads")
    conn = session.connection()
    store.delete_assistant(conn, _made_id(conn, admin, assistant_id), actor=admin.actor)
    return Response(status_code=204)


@router.post("/{assistant_id}/versions", summary="An assistant's versions, newest first")
def list_versions(
    assistant_id: str, body: VersionSearch, user: CurrentUser, session: SessionDep
) -> list[Json]:
    reject_extra(body)
    conn = session.connection()
    found = _one(conn, user, assistant_id)
    parsed = store.parse_id(assistant_id)
    if parsed is None:
        # A file agent has one version here: git keeps the history of agents/.
        rows = [{k: v for k, v in found.items() if k != "updated_at"}]
    else:
        rows = [_version_json(v) for v in store.versions(conn, parsed)]
    wanted = body.metadata or {}
    rows = [r for r in rows if all(r["metadata"].get(k) == v for k, v in wanted.items())]
    return rows[body.offset : body.offset + body.limit]


@router.post("/{assistant_id}/latest", summary="Make a version the current one (admin)")
def latest(assistant_id: str, body: LatestBody, admin: AdminUser, session: SessionDep) -> Json:
    conn = session.connection()
    made = _made_id(conn, admin, assistant_id)
    store.set_latest(conn, made, body.version, actor=admin.actor)
    return _made_json(store.current(conn, made))


@router.get("/{assistant_id}/graph", summary="The graph the assistant runs in")
def graph(
    assistant_id: str, user: CurrentUser, runtime: RuntimeDep, xray: int | bool = False
) -> Json:
    resolve_agent(runtime, user, assistant_id)
    drawn: Json = runtime.compiled().graph.get_graph(xray=xray).to_json()
    return drawn


@router.get("/{assistant_id}/schemas", summary="Input, output and state schemas")
def schemas(assistant_id: str, user: CurrentUser, runtime: RuntimeDep) -> Json:
    resolved = resolve_agent(runtime, user, assistant_id)
    graph_ = runtime.compiled().graph
    return {
        "graph_id": runtime.compiled().snapshot.graphs.get(resolved.name, resolved.name),
        "input_schema": graph_.get_input_jsonschema(),
        "output_schema": graph_.get_output_jsonschema(),
        "state_schema": graph_.get_output_jsonschema(),
        "config_schema": {"type": "object", "properties": {}},
        "context_schema": None,
    }


@router.get("/{assistant_id}/subgraphs", summary="Subgraphs (Agentry graphs have none)")
def subgraphs(assistant_id: str, user: CurrentUser, runtime: RuntimeDep) -> Json:
    resolve_agent(runtime, user, assistant_id)
    return {}
