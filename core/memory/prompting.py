"""What memory adds to an agent's prompt: its memory blocks and automatic recall.

The runtime (core/runtime/graph.py) calls :func:`memory_prompt` before every model
call and offers :func:`block_tools` to every agent. Automatic recall is declared in
the agent's YAML (``recall: {k, scope, budget}``): the top-k memories of the
conversation's user from *other* conversations (``scope: conversations``), from
entities (``entities``) or both (``all``), searched with the latest user message,
kept within ``budget`` tokens and marked as memories.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.tools import BaseTool, StructuredTool
from sqlalchemy import Connection, text

from core.memory.blocks import list_blocks, prompt_section, write_block
from core.memory.conversational import SESSION_ENTITY, recall
from core.memory.search import search
from core.runtime.context import TurnContext, current_turn

log = logging.getLogger(__name__)

SCOPES = ("all", "conversations", "entities")
DEFAULT_BUDGET = 400  # tokens
CHARS_PER_TOKEN = 4  # the usual estimate for English; no tokenizer per model call
BLOCK_AGENT_SQL = text(
    "SELECT agent FROM memory_blocks WHERE user_id = :uid AND label = :label "
    "AND agent IN ('', :agent) ORDER BY agent DESC LIMIT 1"
)


def parse_recall(value: Any, where: str) -> dict[str, Any] | None:
    """The validated ``recall`` of an agent definition (None: no automatic recall).

    Raises:
        ValueError: what is wrong (the caller names the agent).
    """
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"k", "scope", "budget"}:
        raise ValueError(f"{where}: 'recall' must be a mapping of k, scope and budget")
    k, scope = value.get("k", 3), value.get("scope", "all")
    budget = value.get("budget", DEFAULT_BUDGET)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= 20:
        raise ValueError(f"{where}: recall.k must be an integer from 1 to 20")
    if scope not in SCOPES:
        raise ValueError(f"{where}: recall.scope must be one of {', '.join(SCOPES)}")
    if not isinstance(budget, int) or isinstance(budget, bool) or not 20 <= budget <= 8000:
        raise ValueError(f"{where}: recall.budget must be an integer from 20 to 8000 tokens")
    return {"k": k, "scope": scope, "budget": budget}


def _last_user_text(messages: Sequence[BaseMessage]) -> str:
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m.text if isinstance(m.content, list) else str(m.content)
    return ""


def recalled(conn: Connection, turn: TurnContext, query: str, cfg: dict[str, Any]) -> list[str]:
    """Snippets of the user's memories relevant to ``query``, best first, within budget."""
    k, scope = cfg["k"], cfg["scope"]
    found: list[tuple[str, str]] = []
    mine = str(turn.conversation_id)
    if scope in ("all", "conversations"):
        for h in recall(conn, query, user_id=turn.owner_id, k=k + 10, settings=turn.settings):
            if h.metadata.get("conversation_id") != mine:
                found.append(("conversation", h.snippet))
    if scope in ("all", "entities"):
        for h in search(conn, query, user_id=turn.owner_id, k=k, settings=turn.settings):
            if h.entity_type not in ("message", SESSION_ENTITY):
                found.append((h.entity_type, h.snippet))
    budget = cfg["budget"] * CHARS_PER_TOKEN
    out: list[str] = []
    for kind, snippet in found[:k]:
        line = f"- ({kind}) {snippet}"
        if len(line) > budget:
            break
        budget -= len(line)
        out.append(line)
    return out


def memory_prompt(
    turn: TurnContext,
    agent: str,
    recall_cfg: dict[str, Any] | None,
    messages: Sequence[BaseMessage],
) -> tuple[str, bool]:
    """Text appended to the agent's system prompt (its blocks, then recalled memories),
    and whether it has blocks (then it is offered :func:`block_tools`). One connection."""
    with turn.db.engine.begin() as conn:
        blocks = list_blocks(conn, turn.owner_id, agent)
        section = prompt_section(blocks)
        query = _last_user_text(messages) if recall_cfg else ""
        if query.strip():
            try:
                lines = recalled(conn, turn, query, recall_cfg or {})
            except Exception:  # recall is a help, never a reason for a turn to fail
                log.exception("automatic recall failed for agent %s", agent)
                lines = []
            if lines:
                section += (
                    "\n\nMemories (recalled automatically from this user's other "
                    "conversations and records; they may be outdated):\n" + "\n".join(lines)
                )
    return section, bool(blocks)


def _edit(agent: str, label: str, op: str, value: str, old: str | None = None) -> str:
    turn = current_turn()
    with turn.db.engine.begin() as conn:
        owner = conn.execute(
            BLOCK_AGENT_SQL, {"uid": turn.owner_id, "label": label, "agent": agent}
        ).scalar()
        block = write_block(
            conn,
            turn.owner_id,
            label,
            op=op,
            actor=f"agent:{agent}",
            agent=owner or None,
            value=value,
            old=old,
        )
    return (
        f"memory block {label!r} is now version {block['version']} "
        f"({block['chars']}/{block['limit']} characters)"
    )


def block_tools(agent: str) -> list[BaseTool]:
    """``memory_append`` and ``memory_replace`` for ``agent`` (offered when it has blocks)."""

    def memory_append(label: str, text: str) -> str:
        """Append a line to one of your memory blocks (e.g. 'human', 'notes')."""
        return _edit(agent, label, "append", text)

    def memory_replace(label: str, old: str, new: str) -> str:
        """Replace the exact text `old` with `new` in one of your memory blocks."""
        return _edit(agent, label, "replace", new, old)

    return [
        StructuredTool.from_function(memory_append),
        StructuredTool.from_function(memory_replace),
    ]
