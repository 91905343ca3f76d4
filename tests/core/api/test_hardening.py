"""Hardening at the edge, over real HTTP: NUL characters, strict parsing, the OpenAPI
document, thread state writes as an agent, and a data-dependent failure as 4xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.conftest import auth, create_test_user
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

NUL = "\u0000"


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as server:
        yield server


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    _, alice = create_test_user(db, "alice@example.org")
    _, admin = create_test_user(db, "root@example.org", admin=True)
    return {"alice": alice, "admin": admin}


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


def refused(response: httpx.Response, field: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["detail"].startswith(field), body
    return body


def test_nul_anywhere_is_a_422_naming_the_field(
    http: httpx.Client, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    alice, admin = auth(keys["alice"]), auth(keys["admin"])
    thread = http.post("/threads", json={}, headers=alice).json()["thread_id"]
    cases = [
        (http.post("/v1/conversations", json={"metadata": {"k": f"a{NUL}b"}}, headers=alice),
         "body.metadata.k"),
        (http.post("/threads", json={"metadata": {f"k{NUL}": 1}}, headers=alice),
         "body.metadata.k\\u0000"),
        (http.patch(f"/threads/{thread}", json={"metadata": {"x": [NUL]}}, headers=alice),
         "body.metadata.x.0"),
        (http.put("/store/items", json={"namespace": ["a"], "key": f"k{NUL}", "value": {}},
                  headers=alice), "body.key"),
        (http.get("/v1/search", params={"q": f"x{NUL}y"}, headers=alice), "query.q"),
        (http.get(f"/threads/{thread}/state/ab%00cd", headers=alice), "path"),
        (http.post("/v1/tools", json={"name": "t", "module": f"tools.x{NUL}"}, headers=admin),
         "body.module"),
    ]  # fmt: skip
    bare = http.post(  # no content type: FastAPI reads it as JSON all the same
        "/threads/search", content=b'{"metadata": {"k": "\\u0000"}}', headers=alice
    )
    cases.append((bare, "body.metadata.k"))
    for response, field in cases:
        refused(response, field)
    before = len(llm.chat_requests())
    body = refused(
        http.post("/v1/mechanic/changes", json={"instruction": f"add{NUL}"}, headers=admin),
        "body.instruction",
    )
    assert body["errors"][0]["field"] == "body.instruction"
    assert len(llm.chat_requests()) == before  # refused before any model was asked


def test_a_nul_in_a_mechanic_instruction_is_refused_before_the_model() -> None:
    from core.errors import ValidationFailed
    from core.mechanic.agent import spec_from_instruction

    class NoRouter:
        def candidates(self) -> list[Any]:
            raise AssertionError("the model router was consulted")

    with pytest.raises(ValidationFailed, match="instruction: NUL"):
        spec_from_instruction(NoRouter(), None, f"add a{NUL}table")  # type: ignore[arg-type]


def test_numbers_and_times_are_parsed_strictly(http: httpx.Client, keys: dict[str, str]) -> None:
    alice, admin = auth(keys["alice"]), auth(keys["admin"])
    thread = http.post("/threads", json={}, headers=alice).json()["thread_id"]
    refused(http.get("/v1/audit", params={"since": "0"}, headers=admin), "query.since")
    refused(http.get("/v1/search", params={"q": "x", "k": "1.0"}, headers=alice), "query.k")
    refused(http.get(f"/threads/{thread}/runs", params={"offset": "false"}, headers=alice),
            "query.offset")  # fmt: skip
    refused(http.get(f"/threads/{thread}/state", params={"subgraphs": "yes"}, headers=alice),
            "query.subgraphs")  # fmt: skip
    refused(http.post("/threads/search", json={"offset": False}, headers=alice), "offset")
    refused(http.post("/threads/search", json={"limit": 2.5}, headers=alice), "limit")
    # What the document promises still works.
    assert http.get("/v1/audit", params={"since": "2026-01-01T00:00:00Z"}, headers=admin).is_success
    assert http.post("/threads/search", json={"offset": 0, "limit": 5}, headers=alice).is_success


def test_openapi_declares_problem_responses_and_refused_extras(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert "Problem" in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("422", "503"):
                if (path, status) == ("/health", "503"):
                    continue  # its own report, not a problem document
                content = responses[status]["content"]
                assert list(content) == ["application/problem+json"], (method, path, status)
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), (method, path)
    state = doc["paths"]["/threads/{thread_id}/state"]["post"]["responses"]
    assert {"400", "404", "409", "413"} <= set(state)
    # Unsupported options are refused unless null: the schema says so.
    schemas = doc["components"]["schemas"]
    for name in ("ThreadSearch", "StateUpdate", "AssistantSearch", "ItemPut"):
        assert schemas[name]["additionalProperties"] == {"type": "null"}, name


def test_state_writes_as_an_admin_only_agent_need_an_admin(
    http: httpx.Client, keys: dict[str, str]
) -> None:
    alice, admin = auth(keys["alice"]), auth(keys["admin"])
    message = {"messages": [{"role": "assistant", "content": "I am the mechanic"}]}
    thread = http.post("/threads", json={}, headers=alice).json()["thread_id"]
    response = http.post(
        f"/threads/{thread}/state",
        json={"values": message, "as_node": "agent.mechanic"},
        headers=alice,
    )
    assert response.status_code == 403, response.text
    assert "mechanic" in response.json()["detail"]
    state = http.get(f"/threads/{thread}/state", headers=alice).json()
    assert not state["values"].get("messages")  # nothing was written
    # As the thread's own agent it works, and an admin may write as the mechanic.
    ok = http.post(f"/threads/{thread}/state", json={"values": message}, headers=alice)
    assert ok.status_code == 200, ok.text
    mine = http.post("/threads", json={}, headers=admin).json()["thread_id"]
    ok = http.post(
        f"/threads/{mine}/state",
        json={"values": message, "as_node": "agent.mechanic"},
        headers=admin,
    )
    assert ok.status_code == 200, ok.text
