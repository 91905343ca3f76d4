"""The mechanic as an agent you talk to: propose in a conversation, approve, apply, use the new
entity's tool, roll back; a refused plan; forged applies refused (REST and Agent Protocol)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import httpx
import pytest
from fastapi.testclient import TestClient
from langgraph_sdk import get_sync_client
from sqlalchemy import text

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.mechanic import scratch
from tests.conftest import auth, create_test_user
from tests.core.mechanic.conftest import ROOT, mechanic_settings
from tests.core.protocols.conftest import LiveServer

IDEA = {
    "action": "add_entity",
    "entity": "idea",
    "fields": [{"name": "title", "type": "string", "max_length": 200, "required": True}],
}
pytestmark = pytest.mark.slow  # every proposal plans with a dry run in a shadow database

NOTE = {
    "action": "add_entity",
    "entity": "note",
    "fields": [{"name": "body", "type": "text"}],
}


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment repository with the shipped agents and tools (mechanic tools included)."""
    base = tmp_path_factory.mktemp("mechanic-chat")
    return scratch.make_project(base, scratch.RUNTIME_PARTS, source=ROOT)


@pytest.fixture(scope="module")
def settings(test_settings: Settings, project: Path, llm: ScriptedLLM) -> Settings:
    return mechanic_settings(
        test_settings,
        project,
        llm_base_url=llm.base_url,
        llm_model="scripted",
        llm_api_key="k",
    )


@pytest.fixture(scope="module")
def app(db: Database, settings: Settings) -> Any:
    return create_app(db=db, settings=settings)


@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    return {
        "admin": create_test_user(db, "chat-admin@example.com", admin=True)[1],
        "alice": create_test_user(db, "chat-alice@example.com")[1],
    }


def source_state() -> tuple[str, str]:
    repo = git.Repo(ROOT)
    return repo.head.commit.hexsha, repo.git.status("--porcelain")


@pytest.fixture(scope="module", autouse=True)
def source_untouched() -> Iterator[None]:
    """Nothing in this module writes into Agentry's own checkout."""
    before = source_state()
    yield
    assert source_state() == before


def say(
    client: TestClient, llm: ScriptedLLM, key: str, cid: str, content: str, *replies: Reply
) -> dict[str, Any]:
    llm.enqueue(*replies)
    response = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": content}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def resume(client: TestClient, key: str, cid: str, decision: Any) -> dict[str, Any]:
    response = client.post(
        f"/v1/conversations/{cid}/resume", json={"decision": decision}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def new_conversation(client: TestClient, key: str, agent: str = "mechanic") -> str:
    made = client.post("/v1/conversations", json={"agent": agent}, headers=auth(key))
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def tool_text(turn: dict[str, Any], name: str) -> str:
    found = [
        m["content"]
        for m in turn["messages"]
        if m["role"] == "tool" and (m["metadata"] or {}).get("name") == name
    ]
    assert found, turn["messages"]
    return str(found[-1])


def propose(client: TestClient, llm: ScriptedLLM, key: str, cid: str, spec: dict[str, Any]) -> str:
    """One turn that proposes ``spec``; the new change's id."""
    turn = say(
        client,
        llm,
        key,
        cid,
        "keep track of it",
        Reply(tool_calls=[ToolCall("propose_change", {"spec": spec, "instruction": "keep it"})]),
        Reply("Here is the plan."),
    )
    plan = tool_text(turn, "propose_change")
    assert "**SQL:**" in plan and "CREATE TABLE" in plan and "**Dry run:** passed" in plan, plan
    change_id = plan.split("call apply_change with change_id ")[1].split(";")[0]
    return str(uuid.UUID(change_id))


def change_status(db: Database, change_id: str) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT status FROM mechanic_changes WHERE id = :i"), {"i": change_id}
            ).scalar_one()
        )


def audit_actions(db: Database, change_id: str) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action, status FROM audit_log WHERE details->>'change_id' = :i"
                " ORDER BY created_at"
            ),
            {"i": change_id},
        )
        return [(r[0], r[1]) for r in rows]


def test_propose_approve_apply_use_and_roll_back(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str], db: Database, project: Path
) -> None:
    admin = keys["admin"]
    cid = new_conversation(client, admin)
    described = say(
        client,
        llm,
        admin,
        cid,
        "what do we track?",
        Reply(tool_calls=[ToolCall("describe_entity_types", {})]),
        Reply("Nothing yet."),
    )
    assert "No entity types yet" in tool_text(described, "describe_entity_types")
    change_id = propose(client, llm, admin, cid, IDEA)
    assert change_status(db, change_id) == "planned"

    paused = say(
        client,
        llm,
        admin,
        cid,
        "apply it",
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("Applied."),
    )
    (pending,) = paused["interrupts"]
    (request,) = pending["value"]
    assert request["action_request"] == {"action": "apply_change", "args": {"change_id": change_id}}
    assert request["config"]["allow_accept"] and not request["config"]["allow_edit"]
    assert "CREATE TABLE" in request["description"] and change_id in request["description"]
    assert change_status(db, change_id) == "planned"  # nothing before the person decides

    done = resume(client, admin, cid, {"type": "accept"})
    assert done["interrupts"] is None
    assert "Applied change" in tool_text(done, "apply_change")
    assert change_status(db, change_id) == "applied"
    head = git.Repo(project).head.commit
    assert head.message.startswith("keep it") and change_id in head.message
    assert (project / "dynamic" / "schema" / "idea.py").is_file()

    created = say(
        client,
        llm,
        admin,
        cid,
        "note the idea 'fly'",
        Reply(tool_calls=[ToolCall("create_idea", {"title": "fly"})]),
        Reply("Noted."),
    )
    assert '"title": "fly"' in tool_text(created, "create_idea")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT title FROM idea")).scalars().all() == ["fly"]

    listed = say(
        client,
        llm,
        admin,
        cid,
        "history?",
        Reply(tool_calls=[ToolCall("list_changes", {"change_id": change_id})]),
        Reply("Here."),
    )
    assert '"schema_change"' in tool_text(listed, "list_changes")

    asked = say(
        client,
        llm,
        admin,
        cid,
        "undo it",
        Reply(tool_calls=[ToolCall("rollback_change", {"change_id": change_id})]),
        Reply("Rolled back."),
    )
    assert asked["interrupts"][0]["value"][0]["action_request"]["action"] == "rollback_change"
    undone = resume(client, admin, cid, [{"type": "accept"}])  # Agent Chat UI sends a list
    assert "Rolled back change" in tool_text(undone, "rollback_change")
    assert change_status(db, change_id) == "rolled_back"
    with db.engine.connect() as conn:  # the data is kept
        assert conn.execute(text("SELECT count(*) FROM idea")).scalar_one() == 1
    assert audit_actions(db, change_id) == [
        ("change_proposed", "planned"),
        ("change_approved", "succeeded"),
        ("schema_change", "succeeded"),
        ("change_approved", "succeeded"),
        ("rollback", "succeeded"),
    ]


def test_a_refused_plan_is_recorded_and_the_agent_hears_why(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str], db: Database
) -> None:
    admin = keys["admin"]
    cid = new_conversation(client, admin)
    change_id = propose(client, llm, admin, cid, NOTE)
    say(
        client,
        llm,
        admin,
        cid,
        "apply it",
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("Understood, I will propose again."),
    )
    refused = resume(client, admin, cid, {"type": "response", "args": "call it memo"})
    assert "did not approve" in tool_text(refused, "apply_change")
    assert "call it memo" in tool_text(refused, "apply_change")
    # the model's next call carries the person's words
    last = llm.chat_requests()[-1]["messages"][-1]
    assert last["role"] == "tool" and "call it memo" in last["content"]
    assert change_status(db, change_id) == "planned"

    say(
        client,
        llm,
        admin,
        cid,
        "apply it",
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("Not applied."),
    )
    # An edit (Agent Chat UI's form would not offer it) never applies another change.
    other = str(uuid.uuid4())
    edited = resume(client, admin, cid, {"type": "edit", "args": {"change_id": other}})
    assert "did not approve" in tool_text(edited, "apply_change")
    say(
        client,
        llm,
        admin,
        cid,
        "apply it",
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("Not applied."),
    )
    resume(client, admin, cid, {"type": "ignore"})
    assert change_status(db, change_id) == "planned"
    assert audit_actions(db, change_id) == [
        ("change_proposed", "planned"),
        ("change_refused", "succeeded"),
        ("change_refused", "succeeded"),
        ("change_refused", "succeeded"),
    ]


def test_forged_applies_are_refused(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str], db: Database
) -> None:
    admin = keys["admin"]
    here = new_conversation(client, admin)
    change_id = propose(client, llm, admin, here, NOTE)
    # A change proposed elsewhere cannot be applied from this conversation, even approved.
    elsewhere = new_conversation(client, admin)
    forged = say(
        client,
        llm,
        admin,
        elsewhere,
        "apply it",
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("I cannot."),
    )
    assert forged["interrupts"] is None
    assert "not proposed in this conversation" in tool_text(forged, "apply_change")
    # Resuming with an approval no interrupt asked for is refused.
    stray = client.post(
        f"/v1/conversations/{elsewhere}/resume",
        json={"decision": {"type": "accept"}},
        headers=auth(admin),
    )
    assert stray.status_code == 409
    assert change_status(db, change_id) == "planned"

    # Non-admins get neither the tools nor the agent.
    alice = keys["alice"]
    denied = client.post("/v1/conversations", json={"agent": "mechanic"}, headers=auth(alice))
    assert denied.status_code in (403, 404), denied.text
    mine = new_conversation(client, alice, "assistant")
    turn = say(
        client,
        llm,
        alice,
        mine,
        "apply it",
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
        Reply("No such tool."),
    )
    assert "no tool named apply_change" in tool_text(turn, "apply_change")
    offered = {t["function"]["name"] for t in llm.chat_requests()[-2].get("tools", [])}
    assert not offered & {"apply_change", "propose_change", "transfer_to_mechanic"}
    assert change_status(db, change_id) == "planned"


def test_the_agent_protocol_asks_and_refuses_stray_approvals(
    settings: Settings, client: TestClient, llm: ScriptedLLM, keys: dict[str, str], db: Database
) -> None:
    """Through ``langgraph_sdk``: an approval no interrupt asked for is refused; the apply
    pauses with the plan in Agent Chat UI's schema; declining leaves the change planned."""
    admin = keys["admin"]
    cid = new_conversation(client, admin)
    change_id = propose(client, llm, admin, cid, NOTE)
    with LiveServer(create_app(db=db, settings=settings)) as live:
        sdk = get_sync_client(url=live.url, api_key=admin)
        with pytest.raises(httpx.HTTPStatusError) as stray:
            sdk.runs.wait(cid, "mechanic", command={"resume": {"type": "accept"}})
        assert stray.value.response.status_code == 409
        llm.enqueue(
            Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]),
            Reply("Declined."),
        )
        out = sdk.runs.wait(
            cid, "mechanic", input={"messages": [{"role": "user", "content": "apply it"}]}
        )
        assert isinstance(out, dict), out
        (pause,) = out["__interrupt__"]
        (request,) = pause["value"]
        assert request["action_request"]["action"] == "apply_change"
        assert "**SQL:**" in request["description"]
        assert change_status(db, change_id) == "planned"
        final = sdk.runs.wait(cid, "mechanic", command={"resume": [{"type": "ignore"}]})
        assert isinstance(final, dict) and not final.get("__interrupt__")
    assert change_status(db, change_id) == "planned"
    assert audit_actions(db, change_id)[-1] == ("change_refused", "succeeded")


def test_the_assistant_hands_off_to_the_mechanic(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    admin = keys["admin"]
    cid = new_conversation(client, admin, "assistant")
    turn = say(
        client,
        llm,
        admin,
        cid,
        "I want to keep track of ideas",
        Reply(tool_calls=[ToolCall("transfer_to_mechanic", {"reason": "new data"})]),
        Reply(tool_calls=[ToolCall("describe_entity_types", {})]),
        Reply("I can add that."),
    )
    assert tool_text(turn, "describe_entity_types")
    offered = {t["function"]["name"] for t in llm.chat_requests()[-2]["tools"]}
    assert {"propose_change", "apply_change", "rollback_change", "list_changes"} <= offered
