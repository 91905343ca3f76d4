"""Conversation-to-live time of the mechanic: a person asks the ``mechanic`` agent for a new
entity type, reads the plan, approves it, and the first record is created through the new
entity's tool — all through :func:`core.runtime.turns.run_turn`, as every surface does.

The model is the scripted server answering instantly, so what is measured is Agentry's
work: planning (render, generate, lint, dry run), the approval pause, applying (backup,
migrate, commit, go live) and the first tool call on the new table.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from config import Settings
from core.auth.users import create_user
from core.conversations.store import create_conversation
from core.db.engine import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.errors import AgentryError
from core.mechanic.live import EntityRegistry
from core.mechanic.tools import entity_tool_provider
from core.registry.sync import sync_registry
from core.runtime.control import TurnControl
from core.runtime.router import register_default_model
from core.runtime.service import AgentRuntime
from core.runtime.tool_providers import register_tool_provider, unregister_tool_provider
from core.runtime.turns import TurnEvent, run_turn

SPEC = {
    "action": "add_entity",
    "entity": "bench_idea",
    "fields": [{"name": "title", "type": "string", "max_length": 200, "required": True}],
}


def _final(events: list[TurnEvent]) -> dict[str, Any]:
    for event in events:
        if event.type == "error":
            raise AgentryError(str(event.data))
    return events[-1].data


def conversation_to_live(
    db: Database, settings: Settings, registry: EntityRegistry
) -> dict[str, Any]:
    """Seconds for proposal, approval pause, apply and first record, and their total."""
    with ScriptedLLM() as llm:
        local = settings.model_copy(
            update={"llm_base_url": llm.base_url, "llm_model": "scripted", "llm_api_key": "k"}
        )
        with db.engine.begin() as conn:
            sync_registry(conn, local.project_dir)
            register_default_model(conn, local)
            admin, _ = create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@bench.invalid", admin=True)
            cid = uuid.UUID(str(create_conversation(conn, admin, "mechanic").id))
        provider = register_tool_provider(entity_tool_provider(db, registry))
        runtime = AgentRuntime(db, local)
        try:

            def turn(content: str | None, *replies: Reply, **kw: Any) -> dict[str, Any]:
                llm.enqueue(*replies)
                return _final(list(run_turn(runtime, admin, cid, content, **kw)))

            t0 = time.perf_counter()
            proposed = turn(
                "keep track of ideas with a title",
                Reply(tool_calls=[ToolCall("propose_change", {"spec": SPEC})]),
                Reply("Here is the plan."),
            )
            change_id = _change_id(proposed)
            t1 = time.perf_counter()
            paused = turn(
                "apply it",
                Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
                Reply("Applied."),
            )
            if not paused.get("interrupts"):
                raise AgentryError("the apply did not ask for approval")
            t2 = time.perf_counter()
            turn(None, control=TurnControl(resume={"type": "accept"}))
            t3 = time.perf_counter()
            created = turn(
                "note the idea 'fly'",
                Reply(tool_calls=[ToolCall("create_bench_idea", {"title": "fly"})]),
                Reply("Noted."),
            )
            t4 = time.perf_counter()
        finally:
            unregister_tool_provider(provider)
            runtime.close()
    if '"title": "fly"' not in str(created):
        raise AgentryError("the first record was not created through the entity tool")
    return {
        "proposal_s": round(t1 - t0, 3),
        "approval_pause_s": round(t2 - t1, 3),
        "apply_s": round(t3 - t2, 3),
        "first_record_s": round(t4 - t3, 3),
        "total_s": round(t4 - t0, 3),
    }


def _change_id(final: dict[str, Any]) -> str:
    for message in final.get("messages", []):
        content = str(message.get("content", ""))
        if "call apply_change with change_id " in content:
            return content.split("call apply_change with change_id ")[1].split(";")[0]
    raise AgentryError(f"no plan in the mechanic's answer: {final}")
