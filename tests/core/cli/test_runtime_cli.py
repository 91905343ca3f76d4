from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from langchain_core.messages import HumanMessage
from sqlalchemy import text
from typer.testing import CliRunner

from core.api.app import create_app
from core.cli.main import app
from core.conversations.store import create_conversation
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.runtime.catalogue import clear_memory_cache
from core.runtime.context import TurnContext
from core.runtime.service import AgentRuntime
from core.runtime.turns import run_turn
from tests.conftest import create_test_user
from tests.core.runtime.helpers import prepare_registry, runtime_settings

runner = CliRunner()


def invoke(*args: str, input: str | None = None) -> Any:
    result = runner.invoke(app, list(args), input=input)
    return result


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    models = [
        {"id": "free-one", "pricing": {"prompt": "0", "completion": "0"}, "context_length": 8192},
        {"id": "paid-one", "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
    ]
    with ScriptedLLM(models=models) as server:
        yield server


def test_agents_sync_and_list(db: Database, use_database: Any) -> None:
    use_database(db)
    first = invoke("agents", "sync")
    assert first.exit_code == 0, first.output
    assert "created agent assistant" in first.output and "created tool current_time" in first.output
    again = invoke("agents", "sync")
    assert again.exit_code == 0 and "already matches" in again.output
    listed = json.loads(invoke("agents", "list", "--json").stdout)
    assert {a["name"] for a in listed} >= {"assistant", "mechanic"}
    tools = json.loads(invoke("tools", "list", "--json").stdout)
    assert {t["name"] for t in tools} >= {"current_time", "search_memory"}


def test_agents_sync_refuses_a_bad_file_in_one_line(
    db: Database, use_database: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.mechanic.scratch import RUNTIME_PARTS, populate
    from tests.core.runtime.helpers import ROOT

    populate(tmp_path, RUNTIME_PARTS, source=ROOT)
    (tmp_path / "agents" / "broken.yaml").write_text("name: broken\nsystem_prompt: [oops")
    monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(tmp_path))
    use_database(db)
    result = invoke("agents", "sync")
    assert result.exit_code == 1
    assert "broken.yaml: invalid YAML" in result.output and "Traceback" not in result.output


def test_models_sync_reads_through_memory_database_endpoint(
    db: Database, use_database: Any, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_database(db)
    assert invoke("seed").exit_code == 0
    monkeypatch.setenv("SCRIPTED_KEY", "k")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    clear_memory_cache()

    def sync(*extra: str) -> dict[str, Any]:
        result = invoke(
            "models",
            "sync",
            "--endpoint",
            llm.base_url,
            "--free-only",
            "--api-key-env",
            "SCRIPTED_KEY",
            "--json",
            *extra,
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def model_requests() -> int:
        return sum(1 for r in llm.requests if r["_path"] == "/v1/models")

    first = sync()
    assert first == {"source": "endpoint", "written": 1, "models": ["free-one"]}
    assert model_requests() == 1
    assert sync()["source"] == "memory" and model_requests() == 1
    clear_memory_cache()
    assert sync()["source"] == "database" and model_requests() == 1
    assert sync("--refresh")["source"] == "endpoint" and model_requests() == 2

    listed = json.loads(invoke("models", "list", "--json").stdout)
    row = next(m for m in listed if m["model_id"] == "free-one")
    assert row["free"] is True and row["usable"] is True and row["api_key_env"] == "SCRIPTED_KEY"
    assert not any(m["model_id"] == "paid-one" for m in listed)
    assert next(m for m in listed if m["name"] == "gpt-4o-mini")["usable"] is False
    table = invoke("models", "list")
    assert table.exit_code == 0 and "┃" in table.output
    bad = invoke("models", "sync", "--endpoint", "ftp://x")
    assert bad.exit_code != 0 and "http" in bad.output


def checkpoints(db: Database, thread: str) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM checkpoints WHERE thread_id = :t"), {"t": thread}
            ).scalar_one()
        )


def test_prune_keeps_latest_and_drops_deleted_and_orphans(
    db: Database, use_database: Any, llm: ScriptedLLM
) -> None:
    settings = runtime_settings(llm.base_url)
    prepare_registry(db, settings)
    runtime = AgentRuntime(db, settings)
    user, _ = create_test_user(db, "prune@example.org")
    try:
        ids = {}
        for label in ("live", "old", "recent"):
            with db.engine.begin() as conn:
                ids[label] = str(create_conversation(conn, user, "assistant").id)
        llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("t"))
        for content in ("one", "two", "three"):
            list(run_turn(runtime, user, uuid.UUID(ids["live"]), content))
        for label in ("old", "recent"):
            list(run_turn(runtime, user, uuid.UUID(ids[label]), "bye"))
        orphan = str(uuid.uuid4())
        runtime.compiled().graph.invoke(
            {"messages": [HumanMessage("lost")], "agent": "assistant"},
            {"configurable": {"thread_id": orphan}},
            context=TurnContext(db, settings, user, uuid.UUID(ids["live"]), user.id),
        )
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE conversations SET deleted_at = now() - interval '40 days' WHERE id = :i"
                ),
                {"i": ids["old"]},
            )
            conn.execute(
                text(
                    "UPDATE conversations SET deleted_at = now() - interval '1 day' WHERE id = :i"
                ),
                {"i": ids["recent"]},
            )
        live_before = checkpoints(db, ids["live"])
        assert live_before > 2 and checkpoints(db, orphan) > 0

        use_database(db)
        dry = invoke("prune", "--dry-run", "--keep", "2", "--days", "30", "--json")
        assert dry.exit_code == 0, dry.output
        report = json.loads(dry.stdout)
        assert report["deleted_conversation_threads"] == [ids["old"]]
        assert orphan in report["orphan_threads"]
        assert report["checkpoints"] > 0 and report["blobs"] > 0
        assert checkpoints(db, ids["live"]) == live_before  # dry run removed nothing

        real = invoke("prune", "--keep", "2", "--days", "30")
        assert real.exit_code == 0, real.output
        assert f"removed all checkpoints of deleted conversation {ids['old']}" in real.output
        assert checkpoints(db, ids["live"]) == 2
        assert checkpoints(db, ids["old"]) == 0 and checkpoints(db, orphan) == 0
        assert checkpoints(db, ids["recent"]) == 2
        # what remains is enough: the live conversation keeps its history and goes on
        final = list(run_turn(runtime, user, uuid.UUID(ids["live"]), "four"))[-1].data
        assert final["messages_count"] == 10  # 4 (tool turn) + 2 + 2, and 2 for this turn
        state = runtime.compiled().graph.get_state({"configurable": {"thread_id": ids["live"]}})
        assert [m.content for m in state.values["messages"] if m.type == "human"] == [
            "one",
            "two",
            "three",
            "four",
        ]
        again = json.loads(invoke("prune", "--keep", "2", "--json").stdout)
        assert again["orphan_threads"] == [] and again["deleted_conversation_threads"] == []
    finally:
        runtime.close()


class LiveServer:
    def __init__(self, application: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(application, port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_chat_streams_tokens_from_a_live_server(db: Database, llm: ScriptedLLM) -> None:
    _, key = create_test_user(db, "chatter@example.org")
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("Streaming works fine."))
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as url:
        result = invoke(
            "chat",
            "--url",
            url,
            "--api-key",
            key,
            "--agent",
            "assistant",
            input="what time?\nsecond line\n/quit\n",
        )
        refused = invoke("chat", "--url", url, "--api-key", "agk_wrong")
    out = result.output
    assert result.exit_code == 0, out
    assert "with assistant" in out, out
    assert "current_time" in out, out
    assert "Streaming works fine." in out, out
    assert "echo: second line" in out, out
    assert all(r["stream"] for r in llm.chat_requests()[-3:]), llm.chat_requests()[-3:]
    assert refused.exit_code == 1 and "API key" in refused.output


def test_bench_chat_smoke(
    db: Database, use_database: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "dailydialog"
    folder.mkdir()
    (folder / "dialogues_test.txt").write_text(
        "Hi . __eou__ Hello ! __eou__\nHow are you ? __eou__ Fine . __eou__ Good . __eou__\n"
        "Bye . __eou__\n"
    )
    monkeypatch.setenv("AGENTRY_DATASETS_DIR", str(tmp_path))
    use_database(db)
    result = invoke(
        "bench", "chat", "--turns", "6", "--sessions", "3", "--dialogues", "3", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    over, conc = report["overhead"], report["concurrency"]
    assert over["turns"] == 6 and over["platform_ms"]["p50"] > 0 and over["ratio_p50"] > 0
    assert conc["sessions"] == 3 and conc["lost_messages"] == 0 and not conc["errors"]
    assert conc["messages_stored"] == conc["messages_expected"] == conc["messages_counted"] == 12
    recall = report["recall"]  # what automatic recall adds per model call
    assert recall["turns"] >= 1 and recall["added_ms"]["p50"] > 0
    assert recall["added_prompt_tokens"]["max"] > 0  # the bench's own history is recalled


def test_chat_asks_the_person(
    db: Database, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.core.hitl_project import hitl_project

    _, key = create_test_user(db, "asked@example.org")
    project = hitl_project(tmp_path_factory.mktemp("chat-hitl"))
    settings = runtime_settings(llm.base_url, AGENTRY_PROJECT_DIR=str(project))
    llm.enqueue(
        Reply(tool_calls=[ToolCall("current_time", {"timezone": "UTC"})]),
        Reply("Fine, no clock."),
        Reply(tool_calls=[ToolCall("current_time", {"timezone": "UTC"})]),
        Reply("Tokyo it is."),
        Reply(tool_calls=[ToolCall("ask_person", {"question": "favourite colour?"})]),
        Reply("Nice colour."),
    )
    answers = [
        "time?",
        "n",
        "not today",  # refused, with the person's words
        "time again?",
        "e",
        "not json",
        '{"timezone": "Asia/Tokyo"}',  # edited
        "ask me",
        "blue",  # interrupt() in a tool
        "/quit",
    ]
    with LiveServer(create_app(db, settings)) as url:
        result = invoke(
            "chat",
            "--url",
            url,
            "--api-key",
            key,
            "--agent",
            "careful",
            input="\n".join(answers) + "\n",
        )
    out = result.output
    assert result.exit_code == 0, out
    assert 'approve? current_time({"timezone": "UTC"})' in out, out
    assert "Fine, no clock." in out and "Tokyo it is." in out, out
    assert "arguments must be a JSON object" in out, out
    assert "asks: favourite colour?" in out and "Nice colour." in out, out
    tool_texts = [
        m["content"] for r in llm.chat_requests()[-5:] for m in r["messages"] if m["role"] == "tool"
    ]
    assert "The person refused to run current_time. They said: not today" in tool_texts
    assert any(t.endswith("+09:00") for t in tool_texts), tool_texts
    assert "the person answered: blue" in tool_texts
