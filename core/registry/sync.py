"""Synchronising the registries with ``agents/*.yaml`` and ``tools/*.py``.

Everything is read and validated first; only then is anything written, in the
caller's transaction. One bad file refuses the whole sync and leaves the
registry as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select, text

from core.errors import ValidationFailed
from core.models import Agent, Tool
from core.registry.specs import load_agent_file
from core.registry.store import (
    check_references,
    deactivate_agent,
    set_tool_active,
    upsert_agent,
    upsert_tool,
)
from core.registry.tools import discover_tools

# Processes starting together would race on INSERT otherwise.
SYNC_LOCK_SQL = text("SELECT pg_advisory_xact_lock(7306087730760002)")


@dataclass
class SyncReport:
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, op)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def sync_registry(conn: Connection, project_dir: Path, *, actor: str = "system") -> SyncReport:
    """Make the registries match the project's files.

    Args:
        conn: a connection in the caller's transaction (nothing is written on error).
        project_dir: the folder holding ``agents/`` and ``tools/``.
        actor: recorded in the audit rows.

    Returns:
        What changed.

    Raises:
        ValidationFailed: invalid YAML, an invalid tool module, an unknown tool or
            handoff target; every problem is listed.
    """
    tools = discover_tools(project_dir)
    errors: list[str] = []
    specs = []
    for path in sorted((project_dir / "agents").glob("*.yaml")):
        try:
            specs.append(load_agent_file(path))
        except ValidationFailed as exc:
            errors.append(exc.message)
    if errors:
        raise ValidationFailed("; ".join(errors))
    from core.mechanic.tools import entity_tool_names  # the mechanic owns entity tools

    known = {t.name for t in tools} | entity_tool_names(conn)
    check_references(specs, known, {s.name for s in specs})

    conn.execute(SYNC_LOCK_SQL)
    report = SyncReport()
    for tool in tools:
        if op := upsert_tool(conn, tool, actor=actor):
            report.changes.append(("tool", tool.name, op))
    for spec in specs:
        if op := upsert_agent(conn, spec, actor=actor):
            report.changes.append(("agent", spec.name, op))
    # Rows whose file is gone are deactivated (kept: history refers to them).
    file_agents = {s.name for s in specs}
    # Assistants (made through /assistants) have no file.
    file_rows = select(Agent.name).where(Agent.is_active.is_(True), Agent.assistant_id.is_(None))
    for name in conn.execute(file_rows).scalars().all():
        if name not in file_agents and deactivate_agent(conn, name, actor=actor):
            report.changes.append(("agent", name, "deactivated"))
    file_tools = {t.name for t in tools}
    for name in conn.execute(select(Tool.name).where(Tool.is_active.is_(True))).scalars().all():
        if name not in file_tools:
            set_tool_active(conn, name, False, actor=actor)
            report.changes.append(("tool", name, "deactivated"))
    return report
