"""The mechanic evolves agents: add_agent / update_agent planned, approved, applied (YAML in
the deployment repository, commit, registry version, audit), live, rolled back; unknown
tools, handoff targets and models refused at plan time, naming the field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.conftest import auth, create_test_user
from tests.core.mechanic.conftest import ROOT, make_project, mechanic_settings

POET = {
    "action": "add_agent",
    "agent": "poet",
    "description": "Writes verse.",
    "system_prompt": "Write verse.",
    "tools": ["current_time"],
    "handoffs": ["assistant"],
}


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("mechanic-agents"))


@pytest.fixture(scope="module")
def settings(test_settings: Settings, project: Path, llm: ScriptedLLM) -> Settings:
    return mechanic_settings(
        test_settings, project, llm_base_url=llm.base_url, llm_model="scripted", llm_api_key="k"
    )


@pytest.fixture(scope="module")
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(db=db, settings=settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def other(db: Database, settings: Settings) -> Iterator[TestClient]:
    """A second app with its own runtime: what it serves must follow the changes too."""
    with TestClient(create_app(db=db, settings=settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def admin(db: Database) -> str:
    return create_test_user(db, "agents-admin@example.com", admin=True)[1]


def source_state() -> tuple[str, str]:
    repo = git.Repo(ROOT)
    return repo.head.commit.hexsha, repo.git.status("--porcelain")


@pytest.fixture(scope="module", autouse=True)
def source_untouched() -> Iterator[None]:
    """Nothing in this module writes into Agentry's own checkout."""
    before = source_state()
    yield
    assert source_state() == before


def plan(client: TestClient, admin: str, spec: dict[str, Any], status: int = 201) -> Any:
    response = client.post("/v1/mechanic/changes", json={"spec": spec}, headers=auth(admin))
    assert response.status_code == status, response.text
    return response.json()


def act(client: TestClient, admin: str, change_id: str, what: str, status: int = 200) -> Any:
    response = client.post(f"/v1/mechanic/changes/{change_id}/{what}", headers=auth(admin))
    assert response.status_code == status, response.text
    return response.json()


def agent_row(db: Database, name: str) -> tuple[int, bool, str]:
    with db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT version, is_active, spec->>'system_prompt' FROM agents WHERE name = :n"),
            {"n": name},
        ).one()
    return int(row[0]), bool(row[1]), str(row[2])


def prompt_seen(client: TestClient, llm: ScriptedLLM, admin: str, agent: str) -> str:
    """The system prompt the model is sent in a new conversation with ``agent``."""
    made = client.post("/v1/conversations", json={"agent": agent}, headers=auth(admin))
    assert made.status_code == 201, made.text
    llm.enqueue(Reply("A line."))
    said = client.post(
        f"/v1/conversations/{made.json()['id']}/messages",
        json={"content": "hello"},
        headers=auth(admin),
    )
    assert said.status_code == 200, said.text
    return str(llm.chat_requests()[-1]["messages"][0]["content"])


def audit(db: Database, change_id: str) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT action, status FROM audit_log WHERE details->>'change_id' = :i"
                " ORDER BY created_at"
            ),
            {"i": change_id},
        )
        return [(r[0], r[1]) for r in rows]


def test_unknown_names_are_refused_at_plan_time_naming_the_field(
    client: TestClient, admin: str, project: Path
) -> None:
    head = git.Repo(project).head.commit.hexsha
    bad_tool = plan(client, admin, {**POET, "tools": ["current_time", "rm_rf"]}, 422)
    assert bad_tool["detail"].startswith("tools: unknown tools 'rm_rf'"), bad_tool
    bad_handoff = plan(client, admin, {**POET, "handoffs": ["nobody"]}, 422)
    assert bad_handoff["detail"].startswith("handoffs: unknown agents 'nobody'"), bad_handoff
    bad_model = plan(client, admin, {**POET, "model": "no-such-model"}, 422)
    assert bad_model["detail"].startswith("model: unknown model 'no-such-model'"), bad_model
    code = plan(client, admin, {**POET, "code": "import os"}, 422)
    assert "code" in code["detail"]
    assert "already exists" in plan(client, admin, {**POET, "agent": "assistant"}, 409)["detail"]
    missing = {"action": "update_agent", "agent": "nobody", "system_prompt": "x"}
    assert "nobody" in plan(client, admin, missing, 404)["detail"]
    empty = plan(client, admin, {"action": "update_agent", "agent": "assistant"}, 422)
    assert "update_agent needs at least one of" in empty["detail"]
    assert git.Repo(project).head.commit.hexsha == head
    assert not (project / "agents" / "poet.yaml").exists()


def test_add_update_roll_back_and_reapply_an_agent_live_everywhere(
    client: TestClient,
    other: TestClient,
    llm: ScriptedLLM,
    admin: str,
    db: Database,
    project: Path,
) -> None:
    repo = git.Repo(project)
    head = repo.head.commit.hexsha
    added = plan(client, admin, POET)
    assert added["action"] == "add_agent" and added["status"] == "planned"
    assert [f["path"] for f in added["plan"]["files"]] == ["agents/poet.yaml"]
    assert "+system_prompt: Write verse." in added["plan"]["diff"]
    assert repo.head.commit.hexsha == head and not (project / "agents" / "poet.yaml").exists()

    applied = act(client, admin, added["id"], "apply")
    assert applied["status"] == "applied"
    assert repo.head.commit.hexsha == applied["git_commit"] != head
    assert repo.head.commit.author.name == "Agentry Mechanic"
    assert repo.git.status("--porcelain") == ""
    assert "Write verse." in (project / "agents" / "poet.yaml").read_text()
    assert agent_row(db, "poet") == (1, True, "Write verse.")
    assert "Write verse." in prompt_seen(other, llm, admin, "poet")

    updated = plan(
        client, admin, {"action": "update_agent", "agent": "poet", "system_prompt": "Haiku only."}
    )
    assert "-system_prompt: Write verse." in updated["plan"]["diff"]
    assert "+system_prompt: Haiku only." in updated["plan"]["diff"]
    act(client, admin, updated["id"], "apply")
    assert agent_row(db, "poet") == (2, True, "Haiku only.")
    # The other app compiled poet at version 1: it follows the registry before its next turn.
    assert "Haiku only." in prompt_seen(other, llm, admin, "poet")

    # The add cannot be rolled back under the update that builds on it.
    refused = act(client, admin, added["id"], "rollback", 409)
    assert updated["id"] in refused["detail"]

    rolled = act(client, admin, updated["id"], "rollback")
    assert rolled["status"] == "rolled_back"
    assert repo.head.commit.message.startswith("Roll back: update agent poet (system_prompt)")
    assert repo.head.commit.hexsha == rolled["rollback_commit"]
    assert "Write verse." in (project / "agents" / "poet.yaml").read_text()
    assert agent_row(db, "poet") == (3, True, "Write verse.")
    assert "Write verse." in prompt_seen(other, llm, admin, "poet")
    assert audit(db, updated["id"]) == [("agent_change", "succeeded"), ("rollback", "succeeded")]

    gone = act(client, admin, added["id"], "rollback")
    assert gone["status"] == "rolled_back" and not (project / "agents" / "poet.yaml").exists()
    version, active, _ = agent_row(db, "poet")
    assert (version, active) == (4, False)
    refused_chat = other.post("/v1/conversations", json={"agent": "poet"}, headers=auth(admin))
    assert refused_chat.status_code in (404, 422), refused_chat.text

    again = act(client, admin, added["id"], "apply")  # a rolled-back change applies again
    assert again["status"] == "applied"
    assert agent_row(db, "poet") == (5, True, "Write verse.")
    assert repo.git.status("--porcelain") == ""


@pytest.mark.slow  # the entity's plan runs a dry run in a shadow database
def test_entity_tools_can_be_given_and_then_hold_the_entity(client: TestClient, admin: str) -> None:
    gadget = {
        "action": "add_entity",
        "entity": "gadget",
        "fields": [{"name": "label", "type": "string", "max_length": 50}],
    }
    entity = act(client, admin, plan(client, admin, gadget)["id"], "apply")
    keeper = {
        "action": "add_agent",
        "agent": "keeper",
        "system_prompt": "Keep track of gadgets.",
        "tools": ["create_gadget", "find_gadget"],
    }
    agent = act(client, admin, plan(client, admin, keeper)["id"], "apply")
    assert agent["after"]["tools"] == ["create_gadget", "find_gadget"]
    held = act(client, admin, entity["id"], "rollback", 409)
    assert agent["id"] in held["detail"]
    act(client, admin, agent["id"], "rollback")
    assert act(client, admin, entity["id"], "rollback")["status"] == "rolled_back"
    retired = plan(client, admin, {**keeper, "agent": "keeper_two"}, 422)
    assert "unknown tools 'create_gadget', 'find_gadget'" in retired["detail"]


def test_the_mechanic_agent_proposes_an_agent_and_applies_it_after_approval(
    client: TestClient, llm: ScriptedLLM, admin: str, db: Database, project: Path
) -> None:
    made = client.post("/v1/conversations", json={"agent": "mechanic"}, headers=auth(admin))
    cid = made.json()["id"]
    scribe = {"action": "add_agent", "agent": "scribe", "system_prompt": "Take notes."}
    llm.enqueue(
        Reply(tool_calls=[ToolCall("propose_change", {"spec": scribe})]), Reply("The plan.")
    )
    turn = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": "a note taker"}, headers=auth(admin)
    ).json()
    shown = next(m["content"] for m in turn["messages"] if m["role"] == "tool")
    assert "### add agent scribe" in shown and "**Checks:**" in shown and "**SQL:**" not in shown
    change_id = str(uuid.UUID(shown.split("change_id ")[1].split(";")[0]))

    llm.enqueue(
        Reply(tool_calls=[ToolCall("apply_change", {"change_id": change_id})]), Reply("Done.")
    )
    paused = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": "apply"}, headers=auth(admin)
    ).json()
    (pending,) = paused["interrupts"]
    assert "agents/scribe.yaml" in pending["value"][0]["description"]
    assert not (project / "agents" / "scribe.yaml").exists()  # nothing before the person
    done = client.post(
        f"/v1/conversations/{cid}/resume",
        json={"decision": {"type": "accept"}},
        headers=auth(admin),
    ).json()
    applied = [m["content"] for m in done["messages"] if m["role"] == "tool"][-1]
    assert applied.startswith(f"Applied change {change_id}: add agent scribe"), applied
    assert agent_row(db, "scribe") == (1, True, "Take notes.")
    assert audit(db, change_id) == [
        ("change_proposed", "planned"),
        ("change_approved", "succeeded"),
        ("agent_change", "succeeded"),
    ]
