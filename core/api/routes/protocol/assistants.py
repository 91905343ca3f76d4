"""``/assistants``: Agentry's agents as Agent Protocol assistants (id = graph id = agent name)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from core.api.deps import CurrentUser, RuntimeDep, SessionDep
from core.auth.users import Principal
from core.errors import ValidationFailed
from core.models import Agent
from core.protocols.threads import resolve_agent

router = APIRouter(prefix="/assistants", tags=["agent protocol"])


class AssistantSearch(BaseModel):
    model_config = ConfigDict(extra="allow")

    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


def reject_extra(body: BaseModel, where: str = "") -> None:
    """422 naming the first option Agentry does not support (never ignored silently)."""
    for name, value in (body.model_extra or {}).items():
        if value is not None:
            raise ValidationFailed(f"{where}{name}: option not supported by Agentry")


def assistant_json(row: Any) -> dict[str, Any]:
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


def _visible_agents(session: SessionDep, user: Principal) -> list[Any]:
    rows = session.connection().execute(
        select(Agent.__table__).where(Agent.is_active.is_(True)).order_by(Agent.name)
    )
    return [
        r
        for r in rows
        if (r.spec or {}).get("system_prompt")
        and (user.is_admin or not (r.spec or {}).get("admin_only"))
    ]


@router.post("/search", summary="Assistants (agents) the caller may use")
def search(body: AssistantSearch, user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
    reject_extra(body)
    if body.metadata:
        raise ValidationFailed("metadata: assistants have no searchable metadata in Agentry")
    rows = [
        r
        for r in _visible_agents(session, user)
        if (body.graph_id is None or r.name == body.graph_id)
        and (body.name is None or body.name.lower() in r.name.lower())
    ]
    key = {"assistant_id": "name", "graph_id": "name"}.get(body.sort_by or "name", body.sort_by)
    rows.sort(key=lambda r: getattr(r, key or "name"), reverse=body.sort_order == "desc")
    return [assistant_json(r) for r in rows[body.offset : body.offset + body.limit]]


@router.post("/count", summary="How many assistants match")
def count(body: AssistantSearch, user: CurrentUser, session: SessionDep) -> int:
    body.limit, body.offset = 1000, 0
    return len(search(body, user, session))


@router.get("/{assistant_id}", summary="One assistant")
def get_one(
    assistant_id: str, user: CurrentUser, session: SessionDep, runtime: RuntimeDep
) -> dict[str, Any]:
    resolve_agent(runtime, user, assistant_id)
    row = (
        session.connection()
        .execute(select(Agent.__table__).where(Agent.name == assistant_id))
        .one()
    )
    return assistant_json(row)


@router.get("/{assistant_id}/graph", summary="The graph the assistant runs in")
def graph(
    assistant_id: str, user: CurrentUser, runtime: RuntimeDep, xray: int | bool = False
) -> dict[str, Any]:
    resolve_agent(runtime, user, assistant_id)
    drawn: dict[str, Any] = runtime.compiled().graph.get_graph(xray=xray).to_json()
    return drawn


@router.get("/{assistant_id}/schemas", summary="Input, output and state schemas")
def schemas(assistant_id: str, user: CurrentUser, runtime: RuntimeDep) -> dict[str, Any]:
    resolve_agent(runtime, user, assistant_id)
    graph_ = runtime.compiled().graph
    return {
        "graph_id": assistant_id,
        "input_schema": graph_.get_input_jsonschema(),
        "output_schema": graph_.get_output_jsonschema(),
        "state_schema": graph_.get_output_jsonschema(),
        "config_schema": {"type": "object", "properties": {}},
        "context_schema": None,
    }


@router.get("/{assistant_id}/subgraphs", summary="Subgraphs (Agentry graphs have none)")
def subgraphs(assistant_id: str, user: CurrentUser, runtime: RuntimeDep) -> dict[str, Any]:
    resolve_agent(runtime, user, assistant_id)
    return {}
