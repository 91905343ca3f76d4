"""The one rule of which agents a principal may use: admin-only agents are for admins.

Every surface (runs, threads, conversations, the OpenAI models list, handoffs,
assistants) asks here, so the rule cannot drift between copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, select

from core.auth.users import Principal
from core.errors import ForbiddenError, NotFoundError
from core.models import Agent
from core.registry.specs import AgentSpec


def may_use(principal: Principal, agent: AgentSpec | Mapping[str, Any]) -> bool:
    """Whether ``principal`` may run or see ``agent`` (a spec or its stored JSON)."""
    admin_only = agent.admin_only if isinstance(agent, AgentSpec) else agent.get("admin_only")
    return principal.is_admin or not admin_only


def usable_spec(
    agents: Mapping[str, AgentSpec], principal: Principal, name: str, *, what: str = "assistant"
) -> AgentSpec:
    """The agent called ``name`` among ``agents`` (a registry snapshot's), if allowed.

    Raises:
        NotFoundError: no such active agent.
        ForbiddenError: an admin-only agent and the caller is not an admin.
    """
    spec = agents.get(name)
    if spec is None:
        raise NotFoundError(f"no {what} {name!r}: see POST /assistants/search")
    if not may_use(principal, spec):
        raise ForbiddenError(f"{what} {name!r} is for admins")
    return spec


def usable_rows(conn: Connection, principal: Principal) -> list[Row[Any]]:
    """Active, runnable agent rows the principal may use, by name."""
    rows = conn.execute(
        select(Agent.__table__).where(Agent.is_active.is_(True)).order_by(Agent.name)
    )
    return [r for r in rows if (r.spec or {}).get("system_prompt") and may_use(principal, r.spec)]
