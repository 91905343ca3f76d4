"""End to end across issues: an entity the mechanic adds becomes a tool agents use in a turn."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.mechanic import scratch
from core.mechanic.scratch import RUNTIME_PARTS
from tests.conftest import auth, create_test_user
from tests.core.mechanic.conftest import CHARACTER, ROOT, mechanic_settings


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def client(
    db: Database,
    test_settings: Settings,
    llm: ScriptedLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    project = scratch.make_project(tmp_path_factory.mktemp("turns"), RUNTIME_PARTS, source=ROOT)
    settings = mechanic_settings(test_settings, project).model_copy(
        update={"llm_base_url": llm.base_url, "llm_model": "scripted", "llm_api_key": "k"}
    )
    with TestClient(create_app(db=db, settings=settings)) as test_client:
        yield test_client


def test_agent_creates_and_finds_an_entity_through_its_tools(
    client: TestClient, db: Database, llm: ScriptedLLM
) -> None:
    _, admin_key = create_test_user(db, "admin@turns.org", admin=True)
    _, alice_key = create_test_user(db, "alice@turns.org")
    planned = client.post("/v1/mechanic/changes", json={"spec": CHARACTER}, headers=auth(admin_key))
    assert planned.status_code == 201, planned.text
    applied = client.post(
        f"/v1/mechanic/changes/{planned.json()['id']}/apply", headers=auth(admin_key)
    )
    assert applied.status_code == 200, applied.text

    conversation = client.post("/v1/conversations", json={}, headers=auth(alice_key)).json()
    llm.enqueue(
        Reply(tool_calls=[ToolCall("create_character", {"name": "Ada", "backstory": "a poet"})]),
        Reply("Ada is recorded."),
    )
    turn = client.post(
        f"/v1/conversations/{conversation['id']}/messages",
        json={"content": "Keep track of Ada, a poet."},
        headers=auth(alice_key),
    )
    assert turn.status_code == 200, turn.text
    offered = {t["function"]["name"] for t in llm.chat_requests()[-2]["tools"]}
    assert {"create_character", "find_character"} <= offered

    records = client.get("/v1/entities/character", headers=auth(alice_key)).json()["items"]
    assert [(r["name"], r["backstory"]) for r in records] == [("Ada", "a poet")]
    tool_message = next(m for m in turn.json()["messages"] if m["role"] == "tool")
    assert '"name": "Ada"' in tool_message["content"]


def test_records_made_in_a_turn_are_found_by_search_for_their_owner_only(
    client: TestClient, db: Database
) -> None:
    _, alice_key = create_test_user(db, "alice2@turns.org")
    _, bob_key = create_test_user(db, "bob2@turns.org")
    created = client.post(
        "/v1/entities/character",
        json={"name": "Brunhild", "backstory": "a shipwright who builds longships"},
        headers=auth(alice_key),
    )
    assert created.status_code == 201, created.text
    record_id = created.json()["id"]

    hits = client.get(
        "/v1/search",
        params={"q": "longships", "entity_type": "character"},
        headers=auth(alice_key),
    ).json()["hits"]
    assert record_id in {h["entity_id"] for h in hits}
    assert "keyword" in next(h for h in hits if h["entity_id"] == record_id)["rank"]
    other = client.get(
        "/v1/search",
        params={"q": "longships", "entity_type": "character"},
        headers=auth(bob_key),
    ).json()["hits"]
    assert other == []

    deleted = client.delete(f"/v1/entities/character/{record_id}", headers=auth(alice_key))
    assert deleted.status_code in (200, 204), deleted.text
    after = client.get(
        "/v1/search",
        params={"q": "longships", "entity_type": "character", "mode": "keyword"},
        headers=auth(alice_key),
    ).json()["hits"]
    assert after == []
