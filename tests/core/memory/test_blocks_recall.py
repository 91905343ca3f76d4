"""Memory blocks (limits, versions, audit; REST, CLI and agent tools) and automatic recall."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings
from core.api.app import create_app
from core.cli.main import app
from core.conversations.importing import ImportConversation, ImportReport, import_conversations
from core.conversations.store import create_conversation
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.mechanic.scratch import RUNTIME_PARTS, populate
from core.memory.drain import drain_pending
from core.memory.embeddings import get_embedder
from core.runtime.service import AgentRuntime
from core.runtime.turns import run_turn
from tests.conftest import auth, create_test_user
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import ROOT, prepare_registry, runtime_settings

runner = CliRunner()
RECALLER = """name: recaller
description: Remembers other conversations on its own.
system_prompt: You answer from memory.
tools: [current_time]
recall: {k: 3, scope: all, budget: 200}
"""


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def runtime(
    db: Database, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentRuntime]:
    project = tmp_path_factory.mktemp("project")
    populate(project, RUNTIME_PARTS, source=ROOT)
    (project / "agents" / "recaller.yaml").write_text(RECALLER, encoding="utf-8")
    settings = runtime_settings(llm.base_url, AGENTRY_PROJECT_DIR=str(project))
    prepare_registry(db, settings)
    rt = AgentRuntime(db, settings)
    yield rt
    rt.close()


def test_blocks_over_rest_enforce_the_limit_and_keep_every_version(
    db: Database, test_settings: Settings
) -> None:
    ann, ann_key = create_test_user(db, "ann@blocks.org")
    _, bob_key = create_test_user(db, "bob@blocks.org")
    with (
        LiveServer(create_app(db, test_settings)) as server,
        httpx.Client(base_url=server.url, headers=auth(ann_key)) as client,
    ):
        made = client.put("/v1/memory/blocks/human", json={"value": "Ann, a baker", "limit": 30})
        assert made.status_code == 200, made.text
        assert made.json() | {"updated_at": None} == {
            "label": "human",
            "agent": None,
            "value": "Ann, a baker",
            "limit": 30,
            "chars": 12,
            "version": 1,
            "updated_at": None,
        }
        over = client.put("/v1/memory/blocks/human", json={"value": "x" * 31})
        assert over.status_code == 422 and "limit of 30" in over.text
        grown = client.post("/v1/memory/blocks/human/append", json={"text": "likes rye"})
        assert grown.json()["value"] == "Ann, a baker\nlikes rye"
        too_long = client.post("/v1/memory/blocks/human/append", json={"text": "y" * 20})
        assert too_long.status_code == 422 and "limit of 30" in too_long.text
        swapped = client.post(
            "/v1/memory/blocks/human/replace", json={"old": "rye", "new": "spelt"}
        )
        assert swapped.json()["version"] == 3
        missing = client.post("/v1/memory/blocks/human/replace", json={"old": "zz", "new": "a"})
        assert missing.status_code == 422 and "old" in missing.text
        bad = client.put("/v1/memory/blocks/Bad-Label", json={"value": "v"})
        assert bad.status_code == 422 and "label" in bad.text
        client.put("/v1/memory/blocks/persona", json={"value": "terse", "agent": "assistant"})
        every = client.get("/v1/memory/blocks").json()
        assert [(b["label"], b["agent"]) for b in every] == [
            ("human", None),
            ("persona", "assistant"),
        ]
        seen = client.get("/v1/memory/blocks", params={"agent": "mechanic"}).json()
        assert [b["label"] for b in seen] == ["human"]  # shared ones and its own
        history = client.get("/v1/memory/blocks/human/versions").json()
        assert [(h["version"], h["op"]) for h in history] == [
            (1, "set"),
            (2, "append"),
            (3, "replace"),
        ]
        assert history[0]["value"] == "Ann, a baker" and history[0]["actor"] == f"user:{ann.id}"
        other = client.get("/v1/memory/blocks", headers=auth(bob_key)).json()
        assert other == []
        foreign = client.get(
            "/v1/memory/blocks", params={"user": str(ann.id)}, headers=auth(bob_key)
        )
        assert foreign.status_code == 403
    with db.engine.connect() as conn:
        audited = conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'memory_block_edit'")
        ).scalar_one()
        value = conn.execute(
            text("SELECT value FROM memory_blocks WHERE label = 'human'")
        ).scalar_one()
    assert audited == 4 and value == "Ann, a baker\nlikes spelt"  # refused writes left nothing


def test_blocks_from_the_cli(db: Database, use_database: Any) -> None:
    create_test_user(db, "cli@blocks.org")
    use_database(db)
    args = ["--user", "cli@blocks.org"]
    assert (
        runner.invoke(app, ["memory", "set", "notes", "first", *args, "--limit", "10"]).exit_code
        == 0
    )
    over = runner.invoke(app, ["memory", "append", "notes", "much too long", *args])
    assert over.exit_code != 0 and "limit of 10" in over.output
    runner.invoke(app, ["memory", "append", "notes", "two", *args])
    history = runner.invoke(app, ["memory", "history", "notes", *args])
    assert "v1" in history.output and "v2" in history.output and "v3" not in history.output
    listed = runner.invoke(app, ["memory", "list", *args])
    assert "notes" in listed.output and "9/10" in listed.output


def _system_prompt(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def test_blocks_are_in_the_prompt_and_agents_edit_them_with_tools(
    runtime: AgentRuntime, llm: ScriptedLLM
) -> None:
    user, _ = create_test_user(runtime.db, "tools@blocks.org")
    with runtime.db.engine.begin() as conn:
        from core.memory.blocks import write_block

        write_block(conn, user.id, "human", op="set", actor="test", value="Name: Tom", limit=40)
        conv = create_conversation(conn, user, "assistant")
    llm.clear()
    llm.enqueue(
        Reply(tool_calls=[ToolCall("memory_append", {"label": "human", "text": "Likes tea"})]),
        Reply(tool_calls=[ToolCall("memory_append", {"label": "human", "text": "z" * 40})]),
        Reply("Noted."),
    )
    list(run_turn(runtime, user, conv.id, "I like tea"))
    first, second, third = llm.chat_requests()[-3:]
    assert '<memory_block label="human"' in _system_prompt(first)
    assert "Name: Tom" in _system_prompt(first)
    assert {t["function"]["name"] for t in first["tools"]} >= {"memory_append", "memory_replace"}
    assert "Likes tea" in _system_prompt(second)  # the edit is in the very next model call
    refused = [m for m in third["messages"] if m["role"] == "tool"][-1]["content"]
    assert "limit of 40" in refused
    with runtime.db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT value, version FROM memory_blocks WHERE user_id = :u"), {"u": user.id}
        ).one()
        actor = conn.execute(
            text(
                "SELECT actor FROM memory_block_versions WHERE version = 2 AND block_id = "
                "(SELECT id FROM memory_blocks WHERE user_id = :u)"
            ),
            {"u": user.id},
        ).scalar_one()
    assert tuple(row) == ("Name: Tom\nLikes tea", 2) and actor == "agent:assistant"


def test_automatic_recall_puts_other_conversations_in_the_prompt(
    runtime: AgentRuntime, llm: ScriptedLLM
) -> None:
    user, _ = create_test_user(runtime.db, "recall@blocks.org")
    old = ImportConversation.model_validate(
        {
            "conversation": "recall-old",
            "messages": [
                {
                    "role": "user",
                    "speaker": "Calvin",
                    "content": "I flew to Tokyo in March",
                    "timestamp": "2023-03-02T09:00:00Z",
                },
                {"role": "assistant", "content": "Did you see the cherry blossoms?"},
                {"role": "user", "content": "My sister bakes sourdough bread"},
            ],
        }
    )
    with runtime.db.engine.begin() as conn:
        import_conversations(conn, [("old", old)], ImportReport(), default_user=user.id)
        conv = create_conversation(conn, user, "recaller")
        plain = create_conversation(conn, user, "assistant")
    drain_pending(runtime.db.engine, get_embedder(runtime.settings), batch_size=64)
    llm.clear()
    llm.enqueue(Reply("In March."), Reply("No idea."))
    list(run_turn(runtime, user, conv.id, "When did I travel to Tokyo?"))
    prompt = _system_prompt(llm.chat_requests()[-1])
    assert "Memories (recalled automatically" in prompt
    assert "- (conversation) Calvin: I flew to Tokyo in March" in prompt
    assert "When did I travel" not in prompt  # this conversation is not recalled
    assert prompt.count("\n- (") <= 3  # k = 3, within the 200-token budget
    list(run_turn(runtime, user, plain.id, "When did I travel to Tokyo?"))
    assert "Memories" not in _system_prompt(llm.chat_requests()[-1])  # no recall declared
