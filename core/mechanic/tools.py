"""Agent tools for every active entity: ``create_<entity>`` and ``find_<entity>``.

Input schemas come from the entity's spec; each tool is bound to the user it acts for
(records are created as theirs, and they find only their own unless admin).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.encoders import jsonable_encoder
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine, select, text

from core.db.engine import Database
from core.errors import AgentryError
from core.mechanic import entities
from core.mechanic.entities import LiveEntity
from core.mechanic.live import EntityRegistry
from core.memory.search import keyword_search
from core.runtime.context import TurnContext
from core.runtime.tool_providers import ToolProvider

ACTIVE_ENTITIES_SQL = text("SELECT name FROM entity_types WHERE status = 'active'")
TOOL_VERBS = ("create", "find")


def entity_tool_names(conn: Connection) -> set[str]:
    """Names of the tools every active entity offers (agents may list them)."""
    names = conn.execute(ACTIVE_ENTITIES_SQL).scalars()
    return {f"{verb}_{name}" for name in names for verb in TOOL_VERBS}


class FindArgs(BaseModel):
    query: str | None = Field(default=None, description="words to look for; empty: newest first")
    limit: int = Field(default=5, ge=1, le=50)


def _dump(value: Any) -> str:
    return json.dumps(jsonable_encoder(value))


def _create_tool(ent: LiveEntity, engine: Engine, user_id: uuid.UUID) -> StructuredTool:
    def create_record(**kwargs: Any) -> str:
        try:
            with engine.begin() as conn:
                row = entities.create(conn, ent, kwargs, user_id=user_id)
        except AgentryError as exc:
            return _dump({"error": exc.message})
        return _dump(row)

    return StructuredTool.from_function(
        func=create_record,
        name=f"create_{ent.name}",
        description=f"Create a {ent.name} record. {ent.defn.description or ''}".strip(),
        args_schema=ent.create_model,
    )


def _find_tool(
    ent: LiveEntity, engine: Engine, user_id: uuid.UUID, *, admin: bool
) -> StructuredTool:
    scope = None if admin else user_id

    def find_records(query: str | None = None, limit: int = 5) -> str:
        with engine.connect() as conn:
            if query and ent.defn.searchable:
                hits = keyword_search(conn, query, user_id=scope, k=limit, entity_type=ent.name)
                ids = [h.entity_id for h in hits]
                t = ent.table
                rows = {
                    r["id"]: dict(r)
                    for r in conn.execute(
                        select(t).where(t.c.id.in_(ids), entities._scope(ent, scope))
                    ).mappings()
                }
                found = [rows[i] for i in ids if i in rows]
            else:
                found, _ = entities.list_records(conn, ent, user_id=scope, limit=limit)
                found.reverse()
        return _dump(found)

    return StructuredTool.from_function(
        func=find_records,
        name=f"find_{ent.name}",
        description=(
            f"Find {ent.name} records"
            + (f" by text in {', '.join(ent.defn.searchable)}" if ent.defn.searchable else "")
            + "; without a query, the newest."
        ),
        args_schema=FindArgs,
    )


def entity_tools(
    registry: EntityRegistry, engine: Engine, user_id: uuid.UUID, *, admin: bool = False
) -> list[StructuredTool]:
    """``create_<entity>`` and ``find_<entity>`` for every active entity, acting for a user.

    Args:
        registry: this process's live entities.
        engine: the database.
        user_id: the user the tools act for.
        admin: find across all users.

    Returns:
        Two tools per active entity, sorted by entity name.
    """
    registry.ensure_loaded(engine)
    tools: list[StructuredTool] = []
    for ent in registry.all():
        tools.append(_create_tool(ent, engine, user_id))
        tools.append(_find_tool(ent, engine, user_id, admin=admin))
    return tools


def entity_tool_provider(db: Database, registry: EntityRegistry) -> ToolProvider:
    """A runtime tool provider offering the entity tools of ``registry`` to every agent.

    The provider answers only for turns on ``db`` (several apps may share a process),
    acting for the conversation's owner; admins' finds span all users.

    Args:
        db: the database of the app this registry belongs to.
        registry: the app's live entities.

    Returns:
        The provider, for :func:`core.runtime.tool_providers.register_tool_provider`.
    """

    def provide(context: TurnContext) -> list[BaseTool]:
        if context.db is not db:
            return []
        return list(
            entity_tools(registry, db.engine, context.user_id, admin=context.principal.is_admin)
        )

    return provide
