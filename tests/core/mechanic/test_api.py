"""The HTTP surface: /v1/mechanic/changes, /v1/entities/{entity}, /v1/audit; tools; search hook."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.db.metadata import dynamic_tables, load_dynamic_models
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.mechanic.tools import entity_tools
from core.memory.search import keyword_search
from core.memory.sources import source_for
from core.models import Base
from tests.conftest import auth, create_test_user
from tests.core.mechanic.conftest import CHARACTER

SPELL = {
    "action": "add_entity",
    "entity": "spell",
    "fields": [
        {"name": "code", "type": "string", "max_length": 10, "required": True, "unique": True},
        {"name": "school", "type": "enum", "values": ["fire", "water"], "default": "fire"},
        {"name": "power", "type": "integer"},
    ],
}


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def people(db: Database) -> dict[str, Any]:
    admin, admin_key = create_test_user(db, "admin@example.com", admin=True)
    alice, alice_key = create_test_user(db, "alice@example.com")
    bob, bob_key = create_test_user(db, "bob@example.com")
    return {
        "admin": (admin, auth(admin_key)),
        "alice": (alice, auth(alice_key)),
        "bob": (bob, auth(bob_key)),
    }


@pytest.fixture(scope="module")
def client(db: Database, msettings: Settings, llm: ScriptedLLM) -> Iterator[TestClient]:
    settings = msettings.model_copy(
        update={"llm_base_url": llm.base_url, "llm_model": "scripted", "llm_api_key": "k"}
    )
    with TestClient(create_app(db=db, settings=settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def spell(client: TestClient, people: dict[str, Any]) -> dict[str, Any]:
    admin = people["admin"][1]
    planned = client.post("/v1/mechanic/changes", json={"spec": SPELL}, headers=admin)
    assert planned.status_code == 201, planned.text
    applied = client.post(f"/v1/mechanic/changes/{planned.json()['id']}/apply", headers=admin)
    assert applied.status_code == 200, applied.text
    return dict(applied.json())


def test_only_admins_change_the_schema(client: TestClient, people: dict[str, Any]) -> None:
    assert client.post("/v1/mechanic/changes", json={"spec": CHARACTER}).status_code == 401
    denied = client.post(
        "/v1/mechanic/changes", json={"spec": CHARACTER}, headers=people["alice"][1]
    )
    assert denied.status_code == 403
    assert client.get("/v1/mechanic/changes", headers=people["alice"][1]).status_code == 403
    assert client.get("/v1/audit", headers=people["alice"][1]).status_code == 403


def test_bad_requests_get_a_problem_naming_the_reason(
    client: TestClient, people: dict[str, Any]
) -> None:
    admin = people["admin"][1]
    bad = client.post(
        "/v1/mechanic/changes",
        json={
            "spec": {
                "action": "add_entity",
                "entity": "select",
                "fields": [{"name": "a", "type": "text"}],
            }
        },
        headers=admin,
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "reserved SQL keyword" in bad.json()["detail"]
    both = client.post(
        "/v1/mechanic/changes", json={"spec": CHARACTER, "instruction": "x"}, headers=admin
    )
    assert both.status_code == 422


def test_instruction_needs_a_configured_model(
    db: Database, msettings: Settings, people: dict[str, Any]
) -> None:
    with TestClient(create_app(db=db, settings=msettings)) as bare:
        reply = bare.post(
            "/v1/mechanic/changes",
            json={"instruction": "track characters"},
            headers=people["admin"][1],
        )
    assert reply.status_code == 503
    assert "AGENTRY_LLM_BASE_URL" in reply.json()["detail"]


def test_instruction_becomes_a_spec_through_an_llm_tool_call_then_apply(
    client: TestClient, people: dict[str, Any], llm: ScriptedLLM, db: Database
) -> None:
    admin_user, admin = people["admin"]
    llm.enqueue(Reply(tool_calls=[ToolCall("propose_schema_change", CHARACTER)]))
    instruction = "Keep track of characters: name, role, age, backstory and traits"
    planned = client.post("/v1/mechanic/changes", json={"instruction": instruction}, headers=admin)
    assert planned.status_code == 201, planned.text
    body = planned.json()
    assert body["status"] == "planned" and body["instruction"] == instruction
    assert body["spec"]["entity"] == "character" and body["plan"]["lint"]["ok"]
    sent = llm.chat_requests()[-1]
    assert sent["tools"][0]["function"]["name"] == "propose_schema_change"
    assert "action" in sent["tools"][0]["function"]["parameters"]["properties"]
    assert sent["messages"][-1]["content"] == instruction
    assert "mechanic" in sent["messages"][0]["content"]
    assert sent["tool_choice"]["function"]["name"] == "propose_schema_change"
    # The call went through the model router: recorded like every other model call.
    with db.engine.connect() as conn:
        recorded = (
            conn.execute(
                text("SELECT success FROM prompt_history WHERE user_id = :u"), {"u": admin_user.id}
            )
            .scalars()
            .all()
        )
    assert recorded == [True]

    listed = client.get("/v1/mechanic/changes?status=planned", headers=admin).json()
    assert body["id"] in [c["id"] for c in listed]
    one = client.get(f"/v1/mechanic/changes/{body['id'][:7]}", headers=admin).json()
    assert one["plan"]["sql"] == body["plan"]["sql"]  # a unique prefix names the change
    malformed = client.get("/v1/mechanic/changes/xyz", headers=admin)
    assert malformed.status_code == 422 and "unique prefix" in malformed.json()["detail"]
    applied = client.post(f"/v1/mechanic/changes/{body['id']}/apply", headers=admin)
    assert applied.status_code == 200, applied.text
    assert applied.json()["status"] == "applied"
    assert (
        client.get(
            "/v1/mechanic/changes/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12, headers=admin
        ).status_code
        == 404
    )

    audit = client.get(
        "/v1/audit",
        params={
            "action": "schema_change",
            "actor": admin_user.actor,
            "since": "2000-01-01T00:00:00Z",
        },
        headers=admin,
    ).json()
    assert audit[0]["details"]["instruction"] == instruction
    assert audit[0]["status"] == "succeeded" and audit[0]["git_commit"]
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert client.get("/v1/audit", params={"since": future}, headers=admin).json() == []


def test_a_model_that_proposes_nothing_is_a_clear_422(
    client: TestClient, people: dict[str, Any], llm: ScriptedLLM
) -> None:
    llm.enqueue(Reply("I would rather not."))
    reply = client.post(
        "/v1/mechanic/changes", json={"instruction": "do something"}, headers=people["admin"][1]
    )
    assert reply.status_code == 422
    assert "proposed no schema change" in reply.json()["detail"]


def test_an_unreachable_model_is_a_503(
    client: TestClient, people: dict[str, Any], llm: ScriptedLLM
) -> None:
    llm.enqueue(Reply(status=500, error="boom"), Reply(status=500, error="boom"))
    reply = client.post(
        "/v1/mechanic/changes", json={"instruction": "do something"}, headers=people["admin"][1]
    )
    assert reply.status_code == 503
    assert "the mechanic's model failed" in reply.json()["detail"]


def test_live_entities_are_search_sources(client: TestClient, people: dict[str, Any]) -> None:
    source = source_for("character")
    assert source is not None
    assert (source.table, source.fields, source.user_column) == (
        "character",
        ("name", "backstory"),
        "created_by",
    )


def test_entity_crud_validates_scopes_pages_and_soft_deletes(
    client: TestClient, people: dict[str, Any], db: Database
) -> None:
    alice_user, alice = people["alice"]
    _, bob = people["bob"]
    _, admin = people["admin"]
    made = []
    for i in range(5):
        r = client.post(
            "/v1/entities/character",
            json={
                "name": f"Hero {i}",
                "age": 20 + i,
                "backstory": f"born in the valley {i}",
                "traits": ["brave"],
            },
            headers=alice,
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert made[0]["created_by"] == str(alice_user.id) and made[0]["is_deleted"] is False
    for bad in (
        {"age": 3},  # name is required
        {"name": "x" * 201},
        {"name": "ok", "age": "old"},
        {"name": "ok", "colour": "red"},
        {"name": "ok", "traits": "brave"},
    ):
        r = client.post("/v1/entities/character", json=bad, headers=alice)
        assert r.status_code == 422, (bad, r.text)
    assert client.post("/v1/entities/nothing", json={}, headers=alice).status_code == 404

    seen, cursor = [], None
    while True:
        page = client.get(
            "/v1/entities/character",
            params={"limit": 2, **({"cursor": cursor} if cursor else {})},
            headers=alice,
        ).json()
        seen += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"Hero {i}" for i in range(5)]
    assert (
        client.get(
            "/v1/entities/character", params={"cursor": "garbage"}, headers=alice
        ).status_code
        == 422
    )

    assert client.get("/v1/entities/character", headers=bob).json()["items"] == []
    assert client.get(f"/v1/entities/character/{made[0]['id']}", headers=bob).status_code == 404
    assert client.delete(f"/v1/entities/character/{made[0]['id']}", headers=bob).status_code == 404
    assert len(client.get("/v1/entities/character", headers=admin).json()["items"]) == 5

    with db.engine.connect() as conn:
        hits = keyword_search(conn, "valley", user_id=alice_user.id, entity_type="character")
        assert len(hits) == 5
        assert keyword_search(conn, "valley", user_id=people["bob"][0].id) == []
    patched = client.patch(
        f"/v1/entities/character/{made[1]['id']}",
        json={"backstory": "raised by wolves"},
        headers=alice,
    )
    assert patched.status_code == 200 and patched.json()["backstory"] == "raised by wolves"
    assert (
        client.patch(
            f"/v1/entities/character/{made[1]['id']}", json={"age": "x"}, headers=alice
        ).status_code
        == 422
    )
    assert (
        client.delete(f"/v1/entities/character/{made[2]['id']}", headers=alice).status_code == 204
    )
    assert client.get(f"/v1/entities/character/{made[2]['id']}", headers=alice).status_code == 404
    assert len(client.get("/v1/entities/character", headers=alice).json()["items"]) == 4
    with db.engine.connect() as conn:
        wolves = keyword_search(conn, "wolves", user_id=alice_user.id)
        assert [h.entity_id for h in wolves] == [__import__("uuid").UUID(made[1]["id"])]
        assert wolves[0].entity_type == "character"
        assert (
            len(keyword_search(conn, "valley", user_id=alice_user.id)) == 3
        )  # patched + deleted gone
        still = conn.exec_driver_sql(
            "SELECT is_deleted FROM character WHERE id = %(i)s", {"i": made[2]["id"]}
        ).scalar()
        assert still is True  # soft delete: the row stays


def test_unique_and_enum_are_enforced(
    client: TestClient, people: dict[str, Any], spell: dict[str, Any]
) -> None:
    alice = people["alice"][1]
    first = client.post("/v1/entities/spell", json={"code": "FIRE1"}, headers=alice)
    assert first.status_code == 201 and first.json()["school"] == "fire"  # the default
    assert (
        client.post("/v1/entities/spell", json={"code": "FIRE1"}, headers=alice).status_code == 409
    )
    assert (
        client.post(
            "/v1/entities/spell", json={"code": "X", "school": "air"}, headers=alice
        ).status_code
        == 422
    )
    types = client.get("/v1/entities", headers=alice).json()
    assert {"character", "spell"} <= {t["name"] for t in types}


def test_agent_tools_create_and_find_records_for_their_user(
    client: TestClient, people: dict[str, Any], db: Database, spell: dict[str, Any]
) -> None:
    alice_user, _ = people["alice"]
    bob_user, _ = people["bob"]
    registry = client.app.state.entities  # type: ignore[attr-defined]
    tools = {t.name: t for t in entity_tools(registry, db.engine, bob_user.id)}
    assert {"create_character", "find_character", "create_spell", "find_spell"} <= set(tools)
    schema = tools["create_character"].args_schema.model_json_schema()  # type: ignore[union-attr]
    assert schema["required"] == ["name"]
    assert schema["properties"]["name"]["maxLength"] == 200
    assert schema["properties"]["traits"]["anyOf"][0] == {
        "items": {"type": "string"},
        "type": "array",
    }
    created = json.loads(
        tools["create_character"].invoke({"name": "Zed", "backstory": "a quiet smith"})
    )
    assert created["created_by"] == str(bob_user.id)
    # A clash comes back to the model as an error it can read, not an exception.
    refused = json.loads(tools["create_spell"].invoke({"code": "FIRE1"}))
    assert "a record with these values exists" in refused["error"]
    found = json.loads(tools["find_character"].invoke({"query": "smith"}))
    assert [r["name"] for r in found] == ["Zed"]
    newest = json.loads(tools["find_character"].invoke({}))
    assert [r["name"] for r in newest] == ["Zed"]  # bob sees only his own
    alice_tools = {t.name: t for t in entity_tools(registry, db.engine, alice_user.id)}
    assert json.loads(alice_tools["find_character"].invoke({"query": "smith"})) == []


def test_rollback_hides_the_entity_everywhere_and_reapply_brings_it_back(
    client: TestClient, people: dict[str, Any], db: Database, spell: dict[str, Any]
) -> None:
    alice_user, alice = people["alice"]
    admin_user, admin = people["admin"]
    before = client.get("/v1/entities/spell", headers=alice).json()["items"]
    assert before
    rolled = client.post(f"/v1/mechanic/changes/{spell['id'][:9]}/rollback", headers=admin)
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["status"] == "rolled_back"
    assert rolled.json()["rollback_commit"] and rolled.json()["error"] is None
    assert client.get("/v1/entities/spell", headers=alice).status_code == 404
    assert client.get(f"/v1/entities/spell/{before[0]['id']}", headers=alice).status_code == 404
    registry = client.app.state.entities  # type: ignore[attr-defined]
    assert "create_spell" not in {t.name for t in entity_tools(registry, db.engine, alice_user.id)}
    audit = client.get("/v1/audit", params={"action": "rollback"}, headers=admin).json()
    assert audit[0]["actor"] == admin_user.actor and audit[0]["status"] == "succeeded"
    again = client.post(f"/v1/mechanic/changes/{spell['id']}/apply", headers=admin)
    assert again.status_code == 200, again.text
    after = client.get("/v1/entities/spell", headers=alice).json()["items"]
    assert after == before
    assert (
        client.post(f"/v1/mechanic/changes/{spell['id']}/apply", headers=admin).status_code == 409
    )


def test_the_server_imports_dynamic_models_at_start(
    db: Database, msettings: Settings, client: TestClient
) -> None:
    load_dynamic_models(None)  # forget them (the checkout has none)
    assert "character" not in Base.metadata.tables
    with TestClient(create_app(db=db, settings=msettings)):
        assert "character" in dynamic_tables()
        assert "character" in Base.metadata.tables
    load_dynamic_models(None)


def test_openapi_documents_the_mechanic_surface(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/mechanic/changes",
        "/v1/mechanic/changes/{change_id}",
        "/v1/mechanic/changes/{change_id}/apply",
        "/v1/mechanic/changes/{change_id}/rollback",
        "/v1/entities/{entity}",
        "/v1/entities/{entity}/{record_id}",
        "/v1/audit",
    } <= set(paths)
