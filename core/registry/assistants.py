"""Assistants: versioned agents made through the Agent Protocol (``/assistants``).

An assistant is an agent row named ``asst_<hex of its UUID>`` whose definition is
its graph's (a file agent) with the client's ``system_prompt``, ``model`` and
``tools``. Every version is kept in ``assistant_versions``; ``agents.version``
points at the current one, so the registry fingerprint changes on every update,
``set_latest`` and delete, and every process recompiles before its next turn.
Each version's spec is fixed when it is made, so a fingerprint always names the
same definitions.

Functions take the caller's connection and never commit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.auth.users import Principal
from core.errors import NotFoundError, ValidationFailed
from core.models import Agent, AssistantVersion
from core.registry.access import usable_spec
from core.registry.audit import record_change
from core.registry.snapshot import RegistrySnapshot
from core.registry.specs import AgentSpec, parse_agent
from core.registry.store import active_names

# What an assistant may set, in config.configurable or context (context wins).
SETTABLE = ("system_prompt", "model", "tools")
PREFIX = "asst_"

# The current version of every active assistant.
CURRENT_SQL = text(
    "SELECT a.assistant_id, a.name AS agent, a.spec, a.version, a.created_at, a.updated_at,"
    " v.graph_id, v.name, v.description, v.config, v.context, v.metadata"
    " FROM agents a JOIN assistant_versions v"
    " ON v.assistant_id = a.assistant_id AND v.version = a.version"
    " WHERE a.is_active ORDER BY a.created_at"
)
ONE_SQL = text(
    "SELECT a.assistant_id, a.name AS agent, a.spec, a.version, a.created_at, a.updated_at,"
    " v.graph_id, v.name, v.description, v.config, v.context, v.metadata"
    " FROM agents a JOIN assistant_versions v"
    " ON v.assistant_id = a.assistant_id AND v.version = a.version"
    " WHERE a.assistant_id = :id AND a.is_active"
)
LOCK_SQL = text("SELECT version FROM agents WHERE assistant_id = :id FOR UPDATE")


@dataclass(frozen=True)
class AssistantFields:
    """What the client sends for one version (``config`` and ``context`` as made by
    :func:`settings_of`)."""

    graph_id: str
    name: str = "Untitled"
    description: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedAssistant:
    """What a run is started with: the agent (node) to run and its version."""

    assistant_id: str  # as the client names it: a UUID, or a file agent's name
    agent: str
    spec: AgentSpec
    version: int
    graph_id: str


def agent_name(assistant_id: uuid.UUID) -> str:
    return f"{PREFIX}{assistant_id.hex}"


def parse_id(value: str) -> uuid.UUID | None:
    """The UUID of an assistant id in canonical form; None for an agent's name."""
    if len(value) != 36:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def resolve_assistant(
    snapshot: RegistrySnapshot, principal: Principal, assistant_id: str
) -> ResolvedAssistant:
    """The agent to run for ``assistant_id`` (an assistant's UUID or an agent's name).

    Raises:
        NotFoundError: no such active assistant.
        ForbiddenError: an admin-only one and the caller is not an admin.
    """
    parsed = parse_id(assistant_id)
    spec = usable_spec(snapshot.agents, principal, agent_name(parsed) if parsed else assistant_id)
    return ResolvedAssistant(
        assistant_id=assistant_id,
        agent=spec.name,
        spec=spec,
        version=snapshot.versions.get(spec.name, 1),
        graph_id=snapshot.graphs.get(spec.name, spec.name),
    )


def settings_of(
    config: dict[str, Any], context: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``config`` and ``context`` of a version: one set of settings, kept in both
    (as the LangGraph server keeps ``context`` and ``config.configurable`` in step).

    Raises:
        ValidationFailed: an option or setting Agentry does not support, naming it.
    """
    found = _settings(config, context)
    return ({"configurable": found} if found else {}), found


def _settings(config: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    for key, value in config.items():
        if key != "configurable" and value not in (None, [], {}):
            raise ValidationFailed(f"config.{key}: not supported by Agentry's assistants")
    configurable = config.get("configurable") or {}
    found: dict[str, Any] = {}
    for where, source in (("config.configurable", configurable), ("context", context)):
        if not isinstance(source, dict):
            raise ValidationFailed(f"{where}: must be an object")
        for key, value in source.items():
            if key not in SETTABLE:
                raise ValidationFailed(
                    f"{where}.{key}: not supported; an assistant sets {', '.join(SETTABLE)}"
                )
            found[key] = value
    return found


def _graph(conn: Connection, graph_id: str) -> AgentSpec:
    row = conn.execute(
        select(Agent.__table__).where(
            Agent.name == graph_id, Agent.is_active.is_(True), Agent.assistant_id.is_(None)
        )
    ).first()
    if row is None or not (row.spec or {}).get("system_prompt"):
        raise ValidationFailed(f"graph_id: no agent {graph_id!r}; see GET /v1/agents")
    return AgentSpec.from_json({**row.spec, "name": row.name, "description": row.description})


def build_spec(conn: Connection, name: str, fields: AssistantFields) -> AgentSpec:
    """The agent spec of one version: its graph's, with the client's settings.

    Raises:
        ValidationFailed: an unknown graph, setting or tool, naming the field.
    """
    graph = _graph(conn, fields.graph_id)
    data = {
        **graph.to_json(),
        **_settings({}, fields.context),
        "name": name,
        "description": fields.description or graph.description,
    }
    spec = parse_agent(data, where="context")
    tools, _ = active_names(conn)
    for tool in spec.tools:
        if tool not in tools:
            raise ValidationFailed(f"context.tools: unknown tool {tool!r}; see GET /v1/tools")
    return spec


def _add_version(
    conn: Connection,
    assistant_id: uuid.UUID,
    version: int,
    fields: AssistantFields,
    spec: AgentSpec,
    actor: str,
) -> None:
    conn.execute(
        insert(AssistantVersion).values(
            assistant_id=assistant_id,
            version=version,
            graph_id=fields.graph_id,
            name=fields.name,
            description=fields.description,
            config=fields.config,
            context=fields.context,
            meta=fields.metadata,
            spec=spec.to_json(),
            created_by=actor,
        )
    )


def create_assistant(
    conn: Connection, assistant_id: uuid.UUID, fields: AssistantFields, *, actor: str
) -> bool:
    """Create version 1; False when the id is taken (nothing is written then)."""
    name = agent_name(assistant_id)
    spec = build_spec(conn, name, fields)
    made = conn.execute(
        pg_insert(Agent)
        .values(
            name=name,
            description=spec.description,
            config_path=f"assistant_versions/{assistant_id}",
            spec=spec.to_json(),
            version=1,
            created_by=actor,
            assistant_id=assistant_id,
        )
        .on_conflict_do_nothing()
        .returning(Agent.id)
    ).first()
    if made is None:
        return False
    _add_version(conn, assistant_id, 1, fields, spec, actor)
    record_change(
        conn,
        actor=actor,
        kind="agent",
        name=name,
        op="created",
        version=1,
        assistant_id=str(assistant_id),
    )
    return True


def current(conn: Connection, assistant_id: uuid.UUID) -> Row[Any]:
    """The current version of an active assistant.

    Raises:
        NotFoundError: no such assistant.
    """
    row = conn.execute(ONE_SQL, {"id": assistant_id}).first()
    if row is None:
        raise NotFoundError(f"no assistant {str(assistant_id)!r}: see POST /assistants/search")
    return row


def all_current(conn: Connection) -> list[Row[Any]]:
    return list(conn.execute(CURRENT_SQL))


def versions(conn: Connection, assistant_id: uuid.UUID) -> list[Row[Any]]:
    """Every version, newest first."""
    return list(
        conn.execute(
            select(AssistantVersion.__table__)
            .where(AssistantVersion.assistant_id == assistant_id)
            .order_by(AssistantVersion.version.desc())
        )
    )


def _point(conn: Connection, assistant_id: uuid.UUID, version: int, spec: dict[str, Any]) -> None:
    conn.execute(
        update(Agent)
        .where(Agent.assistant_id == assistant_id)
        .values(version=version, spec=spec, description=spec.get("description"))
    )


def update_assistant(
    conn: Connection, assistant_id: uuid.UUID, changes: dict[str, Any], *, actor: str
) -> int:
    """A new version from the current one and ``changes`` (given keys replace,
    ``metadata`` is merged); it becomes the current one. Returns its number."""
    conn.execute(LOCK_SQL, {"id": assistant_id})  # concurrent updates number in turn
    now = current(conn, assistant_id)
    config, context = now.config, now.context
    if changes.get("config") is not None or changes.get("context") is not None:
        config, context = settings_of(changes.get("config") or {}, changes.get("context") or {})
    fields = AssistantFields(
        graph_id=changes.get("graph_id") or now.graph_id,
        name=changes.get("name") or now.name,
        description=changes.get("description") or now.description,
        config=config,
        context=context,
        metadata={**now.metadata, **(changes.get("metadata") or {})},
    )
    spec = build_spec(conn, now.agent, fields)
    newest = conn.execute(
        select(func.max(AssistantVersion.version)).where(
            AssistantVersion.assistant_id == assistant_id
        )
    ).scalar_one()
    version = int(newest) + 1
    _add_version(conn, assistant_id, version, fields, spec, actor)
    _point(conn, assistant_id, version, spec.to_json())
    record_change(
        conn,
        actor=actor,
        kind="agent",
        name=now.agent,
        op="updated",
        version=version,
        assistant_id=str(assistant_id),
    )
    return version


def set_latest(conn: Connection, assistant_id: uuid.UUID, version: int, *, actor: str) -> None:
    """Make ``version`` the current one (what the next run uses).

    Raises:
        NotFoundError: no such assistant or version.
    """
    now = current(conn, assistant_id)
    row = conn.execute(
        select(AssistantVersion.spec).where(
            AssistantVersion.assistant_id == assistant_id, AssistantVersion.version == version
        )
    ).first()
    if row is None:
        raise NotFoundError(f"assistant {str(assistant_id)!r} has no version {version}")
    _point(conn, assistant_id, version, row.spec)
    record_change(
        conn,
        actor=actor,
        kind="agent",
        name=now.agent,
        op="set_latest",
        version=version,
        assistant_id=str(assistant_id),
    )


def delete_assistant(conn: Connection, assistant_id: uuid.UUID, *, actor: str) -> None:
    """Delete the assistant and its versions (threads keep their messages).

    Raises:
        NotFoundError: no such assistant.
    """
    now = current(conn, assistant_id)
    conn.execute(delete(Agent).where(Agent.assistant_id == assistant_id))
    record_change(
        conn,
        actor=actor,
        kind="agent",
        name=now.agent,
        op="deleted",
        version=now.version,
        assistant_id=str(assistant_id),
    )
