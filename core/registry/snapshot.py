"""What the runtime reads from the registries, and a cheap fingerprint to notice changes.

Every process compares the fingerprint before a turn; a change in any process
(API, CLI sync, another server) makes it reload and recompile its graphs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, select, text

from core.models import Agent, Tool
from core.registry.specs import AgentSpec

GRAPHS_SQL = text(
    "SELECT a.name, v.graph_id FROM agents a JOIN assistant_versions v"
    " ON v.assistant_id = a.assistant_id AND v.version = a.version WHERE a.is_active"
)

# An expression, so callers can read it in the same round trip as something else.
FINGERPRINT_EXPR = (
    "((SELECT coalesce(string_agg(name || ':' || version || ':' || is_active::text, ','"
    " ORDER BY name), '') FROM agents)"
    " || '|' || (SELECT coalesce(string_agg(name || ':' || version || ':' || is_active::text,"
    " ',' ORDER BY name), '') FROM tools))"
)
FINGERPRINT_SQL = text(f"SELECT {FINGERPRINT_EXPR}")


@dataclass(frozen=True)
class ToolRow:
    name: str
    module_path: str
    version: int


@dataclass(frozen=True)
class RegistrySnapshot:
    fingerprint: str
    agents: dict[str, AgentSpec]
    tools: dict[str, ToolRow]
    versions: dict[str, int] = field(default_factory=dict)  # agent -> its current version
    graphs: dict[str, str] = field(default_factory=dict)  # assistant's agent -> its graph


def fingerprint(conn: Connection) -> str:
    """Names, versions and states of every agent and tool, as one string."""
    return str(conn.execute(FINGERPRINT_SQL).scalar_one())


def load_snapshot(conn: Connection) -> RegistrySnapshot:
    """The active agents and tools (read in one transaction with the fingerprint)."""
    mark = fingerprint(conn)
    agents = {}
    versions = {}
    for row in conn.execute(select(Agent.__table__).where(Agent.is_active.is_(True))):
        spec = dict(row.spec or {})
        if not spec.get("system_prompt"):
            continue  # seeded but never synced: not runnable yet
        spec["name"] = row.name
        spec["description"] = row.description or ""
        agents[row.name] = AgentSpec.from_json(spec)
        versions[row.name] = row.version
    tools = {
        t.name: ToolRow(t.name, t.module_path, t.version)
        for t in conn.execute(select(Tool.__table__).where(Tool.is_active.is_(True)))
    }
    graphs = {r.name: r.graph_id for r in conn.execute(GRAPHS_SQL)}
    return RegistrySnapshot(mark, agents, tools, versions, graphs)
