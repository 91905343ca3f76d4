"""Assistants as versioned agents, with the real sync ``langgraph_sdk`` client."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from sqlalchemy import text

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

HELLO = {"messages": [{"role": "user", "content": "hello"}]}
AUDIT_SQL = text(
    "SELECT details->>'op' AS op, (details->>'version')::int AS version FROM audit_log"
    " WHERE action = 'registry_change' AND details->>'assistant_id' = :id ORDER BY created_at"
)


@pytest.fixture(scope="module")
def admin(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["admin"])


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


def status(call: Any, *args: Any, **kwargs: Any) -> tuple[int, str]:
    with pytest.raises(httpx.HTTPStatusError) as failed:
        call(*args, **kwargs)
    response = failed.value.response
    return response.status_code, response.text


def prompt_of_run(client: SyncLangGraphClient, llm: ScriptedLLM, assistant_id: str) -> str:
    """The system prompt the model received for one run of ``assistant_id``."""
    before = len(llm.chat_requests())
    out = client.runs.wait(None, assistant_id, input=HELLO)
    assert isinstance(out, dict) and out["messages"][-1]["content"] == "echo: hello"
    sent = llm.chat_requests()[before:]
    assert len(sent) == 1
    first = sent[0]["messages"][0]
    assert first["role"] == "system"
    return str(first["content"])


def test_create_update_versions_latest_delete(
    admin: SyncLangGraphClient, llm: ScriptedLLM, db: Database
) -> None:
    aid = str(uuid.uuid4())
    made = admin.assistants.create(
        "assistant",
        context={"system_prompt": "You are version one."},
        metadata={"team": "blue"},
        assistant_id=aid,
        name="Blue",
        if_exists="do_nothing",
    )
    assert made["assistant_id"] == aid and made["graph_id"] == "assistant"
    assert made["version"] == 1 and made["name"] == "Blue"
    assert made["context"] == {"system_prompt": "You are version one."}
    # an existing id: raise (the default) is a 409, do_nothing answers the existing one
    for if_exists in ("raise", None):
        code, _ = status(
            admin.assistants.create, "assistant", assistant_id=aid, if_exists=if_exists
        )
        assert code == 409
    same = admin.assistants.create(
        "assistant", context={"system_prompt": "other"}, assistant_id=aid, if_exists="do_nothing"
    )
    assert same["version"] == 1 and same["context"] == made["context"]
    assert admin.assistants.get(aid)["name"] == "Blue"
    assert prompt_of_run(admin, llm, aid) == "You are version one."

    changed = admin.assistants.update(
        aid, config={"configurable": {"system_prompt": "You are version two."}}, metadata={"n": 2}
    )
    assert changed["version"] == 2 and changed["metadata"] == {"team": "blue", "n": 2}
    assert changed["name"] == "Blue"  # kept from the version before
    assert prompt_of_run(admin, llm, aid) == "You are version two."
    versions = admin.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["context"] == {"system_prompt": "You are version one."}
    assert [v["version"] for v in admin.assistants.get_versions(aid, metadata={"n": 2})] == [2]

    back = admin.assistants.set_latest(aid, 1)
    assert back["version"] == 1 and back["metadata"] == {"team": "blue"}
    assert prompt_of_run(admin, llm, aid) == "You are version one."
    assert status(admin.assistants.set_latest, aid, 7)[0] == 404

    found = admin.assistants.search(metadata={"team": "blue"})
    assert [a["assistant_id"] for a in found] == [aid]
    picked = admin.assistants.search(metadata={"team": "blue"}, select=["assistant_id", "version"])
    assert picked == [{"assistant_id": aid, "version": 1}]
    by_graph = {a["assistant_id"] for a in admin.assistants.search(graph_id="assistant")}
    assert {aid, "assistant"} <= by_graph
    assert admin.assistants.count(metadata={"team": "blue"}) == 1
    assert admin.assistants.count(graph_id="mechanic") == 1

    # runs name the assistant as the client did
    tid = admin.threads.create(graph_id=aid)["thread_id"]
    run = admin.runs.create(tid, aid, input=HELLO)
    assert run["assistant_id"] == aid
    admin.runs.join(tid, run["run_id"])

    admin.assistants.delete(aid)
    assert status(admin.assistants.get, aid)[0] == 404
    assert status(admin.runs.wait, None, aid, input=HELLO)[0] == 404
    assert admin.assistants.count(metadata={"team": "blue"}) == 0
    with db.engine.connect() as conn:
        audit = [(r.op, r.version) for r in conn.execute(AUDIT_SQL, {"id": aid})]
    assert audit == [("created", 1), ("updated", 2), ("set_latest", 1), ("deleted", 1)]


def test_bad_input_names_the_field(
    admin: SyncLangGraphClient, live: LiveServer, keys: dict[str, str]
) -> None:
    cases = [
        ({"graph_id": "no_such_agent"}, "graph_id"),
        ({"graph_id": "assistant", "context": {"tools": ["no_such_tool"]}}, "context.tools"),
        ({"graph_id": "assistant", "context": {"temperature": 0.1}}, "context.temperature"),
        (
            {"graph_id": "assistant", "config": {"configurable": {"x": 1}}},
            "config.configurable.x",
        ),
        ({"graph_id": "assistant", "context": {"system_prompt": " "}}, "system_prompt"),
        ({"graph_id": "assistant", "assistant_id": "not-a-uuid"}, "assistant_id"),
    ]
    for kwargs, field in cases:
        graph = kwargs.pop("graph_id")
        code, body = status(admin.assistants.create, graph, **kwargs)
        assert code == 422 and field in body, (kwargs, body)
    # a file agent is an assistant whose id is its name
    same = admin.assistants.create("assistant", assistant_id="assistant", if_exists="do_nothing")
    assert same["assistant_id"] == "assistant" and same["graph_id"] == "assistant"
    assert status(admin.assistants.create, "assistant", assistant_id="assistant")[0] == 409
    # file agents change through /v1/agents
    assert status(admin.assistants.update, "assistant", metadata={"a": 1})[0] == 409
    assert status(admin.assistants.get, str(uuid.uuid4()))[0] == 404
    # a tool the registry has is accepted
    made = admin.assistants.create("assistant", context={"tools": ["current_time"]})
    assert made["context"] == {"tools": ["current_time"]}
    # the registry lists it as an agent; /v1/agents does not change it behind /assistants
    name = f"asst_{uuid.UUID(made['assistant_id']).hex}"
    auth = {"Authorization": f"Bearer {keys['admin']}"}
    listed = httpx.get(f"{live.url}/v1/agents/{name}", headers=auth)
    assert listed.status_code == 200 and listed.json()["spec"]["tools"] == ["current_time"]
    put = httpx.put(f"{live.url}/v1/agents/{name}", headers=auth, json={"system_prompt": "Sneaky."})
    assert put.status_code == 409 and "/assistants/" in put.text
    assert httpx.delete(f"{live.url}/v1/agents/{name}", headers=auth).status_code == 409
    admin.assistants.delete(made["assistant_id"])


def test_users_read_and_run_but_cannot_write(
    admin: SyncLangGraphClient, alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    aid = admin.assistants.create("assistant", context={"system_prompt": "Shared."})["assistant_id"]
    assert alice.assistants.get(aid)["assistant_id"] == aid
    assert aid in {a["assistant_id"] for a in alice.assistants.search(limit=100)}
    assert prompt_of_run(alice, llm, aid) == "Shared."
    refused = [
        status(alice.assistants.create, "assistant"),
        status(alice.assistants.update, aid, metadata={"x": 1}),
        status(alice.assistants.set_latest, aid, 1),
        status(alice.assistants.delete, aid),
    ]
    assert [code for code, _ in refused] == [403] * 4
    assert admin.assistants.get(aid)["version"] == 1

    # an assistant on an admin-only agent is admin-only too: invisible to users
    secret = admin.assistants.create("mechanic", context={"system_prompt": "Admins only."})
    sid = secret["assistant_id"]
    assert sid in {a["assistant_id"] for a in admin.assistants.search(limit=100)}
    seen = {a["assistant_id"] for a in alice.assistants.search(limit=100)}
    assert sid not in seen and "mechanic" not in seen and aid in seen
    assert alice.assistants.count(graph_id="mechanic") == 0
    assert status(alice.assistants.get, sid)[0] == 403
    assert status(alice.assistants.get_versions, sid)[0] == 403
    assert status(alice.runs.wait, None, sid, input=HELLO)[0] == 403
    admin.assistants.delete(sid)
    admin.assistants.delete(aid)


@pytest.fixture(scope="module")
def other_live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    """A second app instance (its own runtime and graph cache) on the same database."""
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as server:
        yield server


def test_a_change_on_one_instance_is_used_by_runs_on_another(
    admin: SyncLangGraphClient, other_live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    other = get_sync_client(url=other_live.url, api_key=keys["admin"])
    aid = admin.assistants.create("assistant", context={"system_prompt": "First words."})[
        "assistant_id"
    ]
    assert prompt_of_run(other, llm, aid) == "First words."  # the other one has compiled it
    admin.assistants.update(aid, context={"system_prompt": "Second words."})
    assert prompt_of_run(other, llm, aid) == "Second words."
    other.assistants.set_latest(aid, 1)
    assert prompt_of_run(admin, llm, aid) == "First words."
    other.assistants.delete(aid)
    assert status(admin.runs.wait, None, aid, input=HELLO)[0] == 404


def test_runs_record_the_version_they_used(
    admin: SyncLangGraphClient, alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    aid = admin.assistants.create(
        "assistant", context={"system_prompt": "Recorded one."}, name="Recorded"
    )["assistant_id"]
    tid = alice.threads.create()["thread_id"]

    def run_version() -> tuple[int | None, str]:
        before = len(llm.chat_requests())
        run = alice.runs.create(tid, aid, input=HELLO)
        alice.runs.join(tid, run["run_id"])
        done: dict[str, Any] = dict(alice.runs.get(tid, run["run_id"]))
        prompt = str(llm.chat_requests()[before]["messages"][0]["content"])
        return done["assistant_version"], prompt

    assert run_version() == (1, "Recorded one.")
    admin.assistants.update(aid, context={"system_prompt": "Recorded two."})
    assert run_version() == (2, "Recorded two.")  # the next run, no restart
    admin.assistants.set_latest(aid, 1)
    assert run_version() == (1, "Recorded one.")
    listed = [r["assistant_version"] for r in alice.runs.list(tid)]  # type: ignore[typeddict-item]
    assert listed == [1, 2, 1]
