"""Writing the agent and tool registries: every change bumps the version and is audited.

Functions take the caller's connection and never commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects.postgresql import insert

from core.errors import NotFoundError, ValidationFailed
from core.models import Agent, Tool
from core.registry.audit import record_change
from core.registry.specs import AgentSpec
from core.registry.tools import ToolDefinition


def upsert_agent(conn: Connection, spec: AgentSpec, *, actor: str) -> str | None:
    """Create or update an agent row from its spec.

    Returns:
        ``created``, ``updated``, ``reactivated``, or None when nothing changed.
    """
    row = conn.execute(select(Agent.__table__).where(Agent.name == spec.name)).first()
    values: dict[str, Any] = {
        "description": spec.description,
        "spec": spec.to_json(),
        "config_path": f"agents/{spec.name}.yaml",
    }
    if row is None:
        conn.execute(insert(Agent).values(name=spec.name, created_by=actor, version=1, **values))
        record_change(conn, actor=actor, kind="agent", name=spec.name, op="created", version=1)
        return "created"
    agent = row
    if agent.spec == values["spec"] and agent.description == spec.description and agent.is_active:
        return None
    op = "updated" if agent.is_active else "reactivated"
    version = conn.execute(
        update(Agent)
        .where(Agent.id == agent.id)
        .values(is_active=True, version=Agent.version + 1, **values)
        .returning(Agent.version)
    ).scalar_one()
    record_change(conn, actor=actor, kind="agent", name=spec.name, op=op, version=version)
    return op


def deactivate_agent(conn: Connection, name: str, *, actor: str) -> bool:
    """Deactivate an agent (rows are kept: conversations and switches refer to it)."""
    version = conn.execute(
        update(Agent)
        .where(Agent.name == name, Agent.is_active.is_(True))
        .values(is_active=False, version=Agent.version + 1)
        .returning(Agent.version)
    ).scalar_one_or_none()
    if version is None:
        return False
    record_change(conn, actor=actor, kind="agent", name=name, op="deactivated", version=version)
    return True


def upsert_tool(conn: Connection, tool: ToolDefinition, *, actor: str) -> str | None:
    """Create or update a tool row from its module's definition."""
    row = conn.execute(select(Tool.__table__).where(Tool.name == tool.name)).first()
    values: dict[str, Any] = {
        "description": tool.description,
        "module_path": tool.module_path,
        "schema": tool.schema,
    }
    if row is None:
        conn.execute(insert(Tool).values(name=tool.name, version=1, **values))
        record_change(conn, actor=actor, kind="tool", name=tool.name, op="created", version=1)
        return "created"
    current = row
    same = all(getattr(current, k) == v for k, v in values.items())
    if same and current.is_active:
        return None
    op = "updated" if current.is_active else "reactivated"
    version = conn.execute(
        update(Tool)
        .where(Tool.id == current.id)
        .values(is_active=True, version=Tool.version + 1, **values)
        .returning(Tool.version)
    ).scalar_one()
    record_change(conn, actor=actor, kind="tool", name=tool.name, op=op, version=version)
    return op


def set_tool_active(conn: Connection, name: str, active: bool, *, actor: str) -> int:
    """Activate or deactivate a tool; returns its new version.

    Raises:
        NotFoundError: no such tool.
        ValidationFailed: deactivating a tool an active agent still uses.
    """
    if not active:
        users = [
            a.name
            for a in conn.execute(select(Agent.__table__).where(Agent.is_active.is_(True)))
            if name in (a.spec or {}).get("tools", [])
        ]
        if users:
            raise ValidationFailed(f"tool {name!r} is used by agents {users}; change them first")
    version = conn.execute(
        update(Tool)
        .where(Tool.name == name)
        .values(is_active=active, version=Tool.version + 1)
        .returning(Tool.version)
    ).scalar_one_or_none()
    if version is None:
        raise NotFoundError(f"no tool named {name!r}")
    op = "reactivated" if active else "deactivated"
    record_change(conn, actor=actor, kind="tool", name=name, op=op, version=version)
    return version


def check_references(specs: list[AgentSpec], tool_names: set[str], agent_names: set[str]) -> None:
    """Every tool an agent lists exists, every handoff target is an agent.

    Raises:
        ValidationFailed: naming the agent and the unknown tool or agent.
    """
    problems = []
    for spec in specs:
        for tool in spec.tools:
            if tool not in tool_names:
                problems.append(f"agent {spec.name!r}: unknown tool {tool!r}")
        for target in spec.handoffs:
            if target not in agent_names:
                problems.append(f"agent {spec.name!r}: unknown handoff target {target!r}")
    if problems:
        raise ValidationFailed("; ".join(problems))


def active_names(conn: Connection) -> tuple[set[str], set[str]]:
    """Names of the active tools and agents."""
    tools = set(conn.execute(select(Tool.name).where(Tool.is_active.is_(True))).scalars())
    agents = set(conn.execute(select(Agent.name).where(Agent.is_active.is_(True))).scalars())
    return tools, agents
