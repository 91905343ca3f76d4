from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from core.conversations.messages import from_langchain, store_messages
from core.conversations.store import create_conversation
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.errors import ConflictError, ModelUnavailableError
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
    llm.enqueue(
        Reply(tool_calls=[ToolCall("current_time", {"timezone": "UTC"})]), Reply("It is now.")
    )
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
            text(
                "SELECT count(*) FROM search_index WHERE entity_type = 'message'"
                " AND metadata->>'conversation_id' = :c"
            ),
            {"c": str(conv.id)},
        ).scalar_one()
    assert count == 4 and indexed == 4


def test_turn_cut_by_failing_models_completes_on_the_next_message(
    runtime: AgentRuntime, llm: ScriptedLLM
) -> None:
    user, _ = create_test_user(runtime.db, "pending@example.org")
    with runtime.db.engine.begin() as conn:
        conv = create_conversation(conn, user, "assistant")
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply(status=500))
    with pytest.raises(ModelUnavailableError):
        list(run_turn(runtime, user, conv.id, "first"))
    graph = runtime.compiled().graph
    assert graph.get_state({"configurable": {"thread_id": str(conv.id)}}).next

    llm.enqueue(Reply("answer to first"), Reply("answer to second"))
    events = list(run_turn(runtime, user, conv.id, "second"))
    assert events[0].type == "resumed"
    final = events[-1].data
    assert [(m["role"], m["content"]) for m in final["messages"]] == [
        ("assistant", "answer to first"),
        ("user", "second"),
        ("assistant", "answer to second"),
    ]
    with runtime.db.engine.connect() as conn:
        roles = (
            conn.execute(
                text("SELECT role FROM messages WHERE conversation_id = :c ORDER BY seq"),
                {"c": conv.id},
            )
            .scalars()
            .all()
        )
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]


def test_storing_a_checkpoint_again_never_duplicates(runtime: AgentRuntime) -> None:
    user, _ = create_test_user(runtime.db, "replay@example.org")
    with runtime.db.engine.begin() as conn:
        conv = create_conversation(conn, user, "assistant")
    list(run_turn(runtime, user, conv.id, "hello"))
    state = runtime.compiled().graph.get_state({"configurable": {"thread_id": str(conv.id)}})
    messages = state.values["messages"]
    with runtime.db.engine.begin() as conn:
        again = store_messages(
            conn, conv.id, user.id, [m for m in (from_langchain(x) for x in messages) if m]
        )
        count = conn.execute(
            text("SELECT messages_count FROM conversations WHERE id = :c"), {"c": conv.id}
        ).scalar_one()
    assert again == [] and count == 2


def test_one_turn_at_a_time_per_conversation(runtime: AgentRuntime, llm: ScriptedLLM) -> None:
    user, _ = create_test_user(runtime.db, "busy@example.org")
    with runtime.db.engine.begin() as conn:
        conv = create_conversation(conn, user, "assistant")
    llm.enqueue(Reply("slow", delay=1.5))
    results: list[object] = []
    calls = len(llm.chat_requests())
    first = threading.Thread(
        target=lambda: results.append(list(run_turn(runtime, user, conv.id, "a")))
    )
    first.start()
    deadline = time.monotonic() + 20
    while len(llm.chat_requests()) == calls:  # the first turn is waiting for its model
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(ConflictError, match="already running"):
        list(run_turn(runtime, user, conv.id, "b"))
    first.join()
    assert results and len(results[0]) > 0  # type: ignore[arg-type]
