from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from core.conversations.store import create_conversation
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.runtime.service import AgentRuntime
from core.runtime.turns import run_turn
from tests.conftest import create_test_user
from tests.core.runtime.helpers import prepare_registry, runtime_settings


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def runtime(db: Database, llm: ScriptedLLM) -> Iterator[AgentRuntime]:
    settings = runtime_settings(llm.base_url)
    prepare_registry(db, settings)
    rt = AgentRuntime(db, settings)
    yield rt
    rt.close()


def test_tool_call_turn_stores_every_message_once(runtime: AgentRuntime, llm: ScriptedLLM) -> None:
    user, _ = create_test_user(runtime.db, "turns@example.org")
    with runtime.db.engine.begin() as conn:
        conv = create_conversation(conn, user, "assistant")
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {"timezone": "UTC"})]), Reply("It is now."))
    events = list(run_turn(runtime, user, conv.id, "what time is it?"))
    kinds = [e.type for e in events]
    assert "tool_call" in kinds and "tool_result" in kinds and kinds[-1] == "final"
    final = events[-1].data
    assert [m["role"] for m in final["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert final["messages"][-1]["content"] == "It is now."
    assert final["messages_count"] == 4
    with runtime.db.engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM messages WHERE conversation_id = :c"), {"c": conv.id}
        ).scalar_one()
        indexed = conn.execute(
            text("SELECT count(*) FROM search_index WHERE entity_type = 'message'"
                 " AND metadata->>'conversation_id' = :c"), {"c": str(conv.id)}
        ).scalar_one()
    assert count == 4 and indexed == 4
