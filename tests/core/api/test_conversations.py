from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from langchain_core.tools import BaseTool, StructuredTool

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.memory.drain import drain_pending
from core.memory.embeddings import get_embedder
from core.runtime.context import TurnContext
from core.runtime.tool_providers import register_tool_provider, unregister_tool_provider
from tests.conftest import auth, create_test_user
from tests.core.runtime.helpers import runtime_settings


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def client(db: Database, llm: ScriptedLLM) -> Iterator[TestClient]:
    with TestClient(create_app(db, runtime_settings(llm.base_url))) as c:
        yield c


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    _, alice = create_test_user(db, "alice@example.org")
    _, bob = create_test_user(db, "bob@example.org")
    _, admin = create_test_user(db, "root@example.org", admin=True)
    return {"alice": alice, "bob": bob, "admin": admin}


def new_conversation(client: TestClient, key: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/conversations", json=body, headers=auth(key))
    assert response.status_code == 201, response.text
    return response.json()


def sse_events(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_every_route_needs_a_key(client: TestClient) -> None:
    cid = "00000000-0000-0000-0000-000000000001"
    for method, path in [
        ("get", "/v1/conversations"),
        ("post", "/v1/conversations"),
        ("get", f"/v1/conversations/{cid}"),
        ("post", f"/v1/conversations/{cid}/messages"),
        ("get", f"/v1/conversations/{cid}/messages"),
        ("get", f"/v1/conversations/{cid}/stats"),
        ("get", f"/v1/conversations/{cid}/switches"),
        ("get", "/v1/agents"),
        ("get", "/v1/tools"),
        ("get", "/v1/models"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"].startswith("application/problem+json")


def test_admin_routes_refuse_users(client: TestClient, keys: dict[str, str]) -> None:
    user = auth(keys["alice"])
    spec = {"name": "x", "system_prompt": "p"}
    assert client.post("/v1/agents", json=spec, headers=user).status_code == 403
    assert client.put("/v1/agents/assistant", json=spec, headers=user).status_code == 403
    assert client.delete("/v1/agents/assistant", headers=user).status_code == 403
    assert client.post("/v1/agents/sync", headers=user).status_code == 403
    assert (
        client.post("/v1/tools", json={"module_path": "tools/x.py"}, headers=user).status_code
        == 403
    )
    assert (
        client.patch("/v1/tools/current_time", json={"is_active": False}, headers=user).status_code
        == 403
    )
    assert client.get("/v1/agents", headers=user).status_code == 200


def test_json_turn_with_tool_call(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    conv = new_conversation(client, keys["alice"], metadata={"topic": "time"})
    assert conv["current_agent"] == "assistant" and conv["metadata"] == {"topic": "time"}
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("Noon, roughly."))
    response = client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "what time is it?"},
        headers=auth(keys["alice"]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert body["messages"][2]["metadata"]["name"] == "current_time"
    assert body["messages"][3]["content"] == "Noon, roughly."
    assert body["messages"][3]["model"] == "default"
    stats = client.get(f"/v1/conversations/{conv['id']}/stats", headers=auth(keys["alice"])).json()
    assert stats["messages_count"] == 4 and stats["by_role"]["tool"] == 1
    assert stats["tokens"] > 0 and stats["last_message_at"]
    got = client.get(f"/v1/conversations/{conv['id']}", headers=auth(keys["alice"])).json()
    assert got["messages_count"] == 4 and got["pending_turn"] is False
    # the model saw the tool's answer on the second call
    assert llm.chat_requests()[-1]["messages"][-1]["role"] == "tool"


def test_sse_streams_tokens_tool_events_and_final(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    conv = new_conversation(client, keys["alice"])
    llm.enqueue(
        Reply(tool_calls=[ToolCall("current_time", {"timezone": "Europe/Paris"})]),
        Reply("It is late in Paris."),
    )
    with client.stream(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "time in Paris?"},
        headers={**auth(keys["alice"]), "Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response.read().decode())
    kinds = [k for k, _ in events]
    assert kinds[-1] == "final"
    tool_call = next(d for k, d in events if k == "tool_call")
    assert tool_call["name"] == "current_time" and tool_call["args"] == {"timezone": "Europe/Paris"}
    paris = next(d for k, d in events if k == "tool_result")["content"]
    assert paris.endswith(("+01:00", "+02:00")), paris
    tokens = "".join(d["text"] for k, d in events if k == "token")
    assert tokens == "It is late in Paris."
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("final")
    assert llm.chat_requests()[-1]["stream"] is True


def test_handoff_switches_agent_and_records_it(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    conv = new_conversation(client, keys["admin"])
    llm.enqueue(
        Reply(tool_calls=[ToolCall("transfer_to_mechanic", {"reason": "wants a new table"})]),
        Reply("Mechanic here: I will plan it."),
    )
    response = client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "keep track of characters"},
        headers=admin,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current_agent"] == "mechanic"
    assert body["messages"][-1]["agent"] == "mechanic"
    # the second model call ran with the mechanic's prompt and tools
    second = llm.chat_requests()[-1]
    assert "mechanic" in second["messages"][0]["content"]
    assert {t["function"]["name"] for t in second["tools"]} >= {
        "current_time",
        "transfer_to_assistant",
    }
    switches = client.get(f"/v1/conversations/{conv['id']}/switches", headers=admin).json()
    assert [(s["from_agent"], s["to_agent"]) for s in switches] == [
        (None, "assistant"),
        ("assistant", "mechanic"),
    ]
    assert switches[1]["reason"] == "wants a new table"
    assert (
        client.get(f"/v1/conversations/{conv['id']}", headers=admin).json()["current_agent"]
        == "mechanic"
    )


def test_users_cannot_reach_admin_only_agents(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    refused = client.post(
        "/v1/conversations", json={"agent": "mechanic"}, headers=auth(keys["bob"])
    )
    assert refused.status_code == 403
    conv = new_conversation(client, keys["bob"])
    llm.enqueue(Reply("hi"))
    client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "hi"},
        headers=auth(keys["bob"]),
    )
    offered = {t["function"]["name"] for t in llm.chat_requests()[-1]["tools"]}
    assert "transfer_to_mechanic" not in offered and "search_memory" in offered


def test_message_pagination_is_stable_and_complete(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    key = auth(keys["alice"])
    conv = new_conversation(client, keys["alice"])
    for i in range(5):
        client.post(
            f"/v1/conversations/{conv['id']}/messages", json={"content": f"m{i}"}, headers=key
        )
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(
            f"/v1/conversations/{conv['id']}/messages", params=params, headers=key
        ).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [m["content"] for m in seen] == [x for i in range(5) for x in (f"m{i}", f"echo: m{i}")]
    assert len({m["id"] for m in seen}) == 10
    bad = client.get(f"/v1/conversations/{conv['id']}/messages?cursor=garbage", headers=key)
    assert bad.status_code == 422 and "cursor" in bad.json()["detail"]


def test_conversation_list_filters_and_pages(client: TestClient, keys: dict[str, str]) -> None:
    key = auth(keys["bob"])
    made = [new_conversation(client, keys["bob"])["id"] for _ in range(3)]
    client.delete(f"/v1/conversations/{made[0]}", headers=key)
    ids: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1, "status": "active"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/conversations", params=params, headers=key).json()
        ids += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(made[1:]) <= set(ids) and made[0] not in ids
    assert len(ids) == len(set(ids))
    assert client.get(f"/v1/conversations/{made[0]}", headers=key).status_code == 404


def test_users_see_only_their_own(client: TestClient, keys: dict[str, str]) -> None:
    conv = new_conversation(client, keys["alice"])
    bob = auth(keys["bob"])
    for method, suffix in [
        ("get", ""),
        ("get", "/messages"),
        ("get", "/stats"),
        ("get", "/switches"),
        ("delete", ""),
    ]:
        assert (
            getattr(client, method)(
                f"/v1/conversations/{conv['id']}{suffix}", headers=bob
            ).status_code
            == 404
        )
    posted = client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": "hi"}, headers=bob
    )
    assert posted.status_code == 404
    assert conv["id"] not in [
        c["id"] for c in client.get("/v1/conversations?limit=200", headers=bob).json()["items"]
    ]
    admin = auth(keys["admin"])
    assert client.get(f"/v1/conversations/{conv['id']}", headers=admin).status_code == 200


def test_bad_input_is_a_clear_4xx(client: TestClient, keys: dict[str, str]) -> None:
    key = auth(keys["alice"])
    conv = new_conversation(client, keys["alice"])
    url = f"/v1/conversations/{conv['id']}/messages"
    empty = client.post(url, json={"content": "   "}, headers=key)
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    missing = client.post(url, json={}, headers=key)
    assert missing.status_code == 422 and "content" in missing.json()["detail"]
    big = client.post(url, json={"content": "x" * 40000}, headers=key)
    assert big.status_code == 413 and "AGENTRY_MAX_MESSAGE_CHARS" in big.json()["detail"]
    huge = client.post(
        url,
        content=b'{"content": "' + b"x" * 200000 + b'"}',
        headers={**key, "content-type": "application/json"},
    )
    assert huge.status_code == 413
    unknown = client.post("/v1/conversations", json={"agent": "nobody"}, headers=key)
    assert unknown.status_code == 422 and "nobody" in unknown.json()["detail"]
    assert client.get("/v1/conversations/not-a-uuid", headers=key).status_code == 422
    assert client.get("/v1/conversations?status=bogus", headers=key).status_code == 422
    # nothing was stored by the refused requests
    assert client.get(f"/v1/conversations/{conv['id']}", headers=key).json()["messages_count"] == 0


def test_search_memory_finds_only_the_users_messages(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str], db: Database
) -> None:
    alice, bob = auth(keys["alice"]), auth(keys["bob"])
    a = new_conversation(client, keys["alice"])
    b = new_conversation(client, keys["bob"])
    client.post(
        f"/v1/conversations/{a['id']}/messages",
        json={"content": "my cat is named Tiramisu"},
        headers=alice,
    )
    client.post(
        f"/v1/conversations/{b['id']}/messages",
        json={"content": "my dog is named Tiramisu"},
        headers=bob,
    )
    # Every message embedded, so the search sees the same index whatever the embedding
    # worker managed so far (a fresh message has no vector yet and can be outranked).
    settings = client.app.state.settings  # type: ignore[attr-defined]
    drain_pending(db.engine, get_embedder(settings), batch_size=64)
    a2 = new_conversation(client, keys["alice"])
    llm.enqueue(
        Reply(tool_calls=[ToolCall("search_memory", {"query": "Tiramisu"})]), Reply("Your cat.")
    )
    body = client.post(
        f"/v1/conversations/{a2['id']}/messages",
        json={"content": "who is Tiramisu?"},
        headers=alice,
    ).json()
    result = next(m for m in body["messages"] if m["role"] == "tool")["content"]
    assert "cat" in result and "dog" not in result
    assert "[message]" in result


def test_tool_providers_add_tools_with_the_turn_context(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    seen: list[TurnContext] = []

    def provider(context: TurnContext) -> list[BaseTool]:
        seen.append(context)

        def secret_word(hint: str) -> str:
            """Tell the secret word.

            Args:
                hint: anything.
            """
            return f"swordfish for {context.principal.email}"

        return [StructuredTool.from_function(secret_word, parse_docstring=True)]

    register_tool_provider(provider)
    try:
        conv = new_conversation(client, keys["alice"])
        llm.enqueue(Reply(tool_calls=[ToolCall("secret_word", {"hint": "x"})]), Reply("done"))
        body = client.post(
            f"/v1/conversations/{conv['id']}/messages",
            json={"content": "secret?"},
            headers=auth(keys["alice"]),
        ).json()
    finally:
        unregister_tool_provider(provider)
    assert (
        next(m for m in body["messages"] if m["role"] == "tool")["content"]
        == "swordfish for alice@example.org"
    )
    offered = {t["function"]["name"] for t in llm.chat_requests()[-2]["tools"]}
    assert "secret_word" in offered
    assert seen and str(seen[0].conversation_id) == conv["id"] and seen[0].db is not None


def test_no_model_answers_503_with_how_to(db: Database, keys: dict[str, str]) -> None:
    # The default model's row exists, but this process has no AGENTRY_LLM_* configuration
    # and no catalogue model has its key variable set.
    with TestClient(create_app(db, runtime_settings(None))) as bare:
        conv = new_conversation(bare, keys["alice"])
        response = bare.post(
            f"/v1/conversations/{conv['id']}/messages",
            json={"content": "hi"},
            headers=auth(keys["alice"]),
        )
        count = bare.get(f"/v1/conversations/{conv['id']}", headers=auth(keys["alice"])).json()
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "AGENTRY_LLM_BASE_URL" in detail and "AGENTRY_LLM_MODEL" in detail
    assert count["messages_count"] == 0


def test_sse_reports_a_failed_turn_as_an_error_event(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    conv = new_conversation(client, keys["alice"])
    llm.enqueue(Reply(status=500, error="boom"))
    with client.stream(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "will fail"},
        headers={**auth(keys["alice"]), "Accept": "text/event-stream"},
    ) as response:
        events = sse_events(response.read().decode())
    assert [k for k, _ in events] == ["message", "error"]
    assert events[1][1]["status"] == 503 and "every usable model failed" in events[1][1]["detail"]
    got = client.get(f"/v1/conversations/{conv['id']}", headers=auth(keys["alice"])).json()
    assert got["pending_turn"] is True and got["messages_count"] == 1
    # the next message completes the interrupted turn first
    llm.enqueue(Reply("late answer"), Reply("second answer"))
    body = client.post(
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "again"},
        headers=auth(keys["alice"]),
    ).json()
    assert body["resumed"] is True
    assert [m["content"] for m in body["messages"]] == ["late answer", "again", "second answer"]


def test_sse_announces_a_handoff(
    client: TestClient, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    conv = new_conversation(client, keys["admin"])
    llm.enqueue(
        Reply(tool_calls=[ToolCall("transfer_to_mechanic", {"reason": "schema work"})]),
        Reply("Mechanic speaking."),
    )
    with client.stream(
        "POST",
        f"/v1/conversations/{conv['id']}/messages",
        json={"content": "add a table"},
        headers={**auth(keys["admin"]), "Accept": "text/event-stream"},
    ) as response:
        events = sse_events(response.read().decode())
    handoff = next(d for k, d in events if k == "handoff")
    assert handoff == {"from": "assistant", "to": "mechanic", "reason": "schema work"}
    tokens = [d for k, d in events if k == "token"]
    assert "".join(t["text"] for t in tokens) == "Mechanic speaking."
    assert {t["agent"] for t in tokens} == {"mechanic"}
    assert events[-1][1]["current_agent"] == "mechanic"


def test_models_route_shows_the_router_ranking(client: TestClient, keys: dict[str, str]) -> None:
    models = client.get("/v1/models", headers=auth(keys["alice"])).json()
    default = next(m for m in models if m["name"] == "default")
    assert default["usable"] is True and default["rank"] == 1 and default["request_count"] > 0
    assert all(m["rank"] is None for m in models if not m["usable"])
