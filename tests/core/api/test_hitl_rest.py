"""Human in the loop through Agentry's REST API: a paused conversation, ``POST
.../resume {decision}`` (JSON and SSE), several decisions by id, ``approve_tools``
in agent definitions, and resuming after a restart."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.conftest import auth, create_test_user
from tests.core.hitl_project import hitl_project
from tests.core.runtime.helpers import runtime_settings


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def settings(llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    project = hitl_project(tmp_path_factory.mktemp("hitl-rest"))
    return runtime_settings(llm.base_url, AGENTRY_PROJECT_DIR=str(project))


@pytest.fixture(scope="module")
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(db, settings)) as c:
        yield c


@pytest.fixture(scope="module")
def key(db: Database) -> str:
    return create_test_user(db, "hitl@example.org")[1]


@pytest.fixture(scope="module")
def admin(db: Database) -> str:
    return create_test_user(db, "hitl-admin@example.org", admin=True)[1]


def paused(client: TestClient, llm: ScriptedLLM, key: str, *calls: ToolCall) -> dict[str, Any]:
    """A conversation with ``careful`` paused on ``calls``; the answer to its message."""
    cid = client.post("/v1/conversations", json={"agent": "careful"}, headers=auth(key)).json()[
        "id"
    ]
    llm.enqueue(Reply(tool_calls=list(calls)), Reply("All done."))
    response = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": "time?"}, headers=auth(key)
    )
    assert response.status_code == 200, response.text
    return {"id": cid, **response.json()}


def sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_pause_show_refuse_message_and_resume(
    client: TestClient, llm: ScriptedLLM, key: str
) -> None:
    turn = paused(client, llm, key, ToolCall("current_time", {"timezone": "UTC"}))
    cid = turn["id"]
    (pending,) = turn["interrupts"]
    assert pending["node"] == "approve"
    assert pending["value"][0]["action_request"]["action"] == "current_time"
    conversation = client.get(f"/v1/conversations/{cid}", headers=auth(key)).json()
    assert conversation["turn_status"] == "interrupted"
    assert [i["id"] for i in conversation["interrupts"]] == [pending["id"]]

    refused = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": "hello?"}, headers=auth(key)
    )
    assert refused.status_code == 409 and "waiting for a decision" in refused.json()["detail"]
    no_answer = client.post(f"/v1/conversations/{cid}/resume", headers=auth(key))
    assert no_answer.status_code == 409
    for body, field in (
        ({"decision": None}, "decision"),
        ({"decision": "yes please"}, "resume["),
        ({"decisions": {}}, "decisions"),
        ({"decision": {"type": "accept"}, "decisions": {pending["id"]: 1}}, "decisions"),
    ):
        bad = client.post(f"/v1/conversations/{cid}/resume", json=body, headers=auth(key))
        assert bad.status_code == 422 and field in bad.json()["detail"], (body, bad.text)
    extra = client.post(f"/v1/conversations/{cid}/resume", json={"x": 1}, headers=auth(key))
    assert extra.status_code == 422

    done = client.post(
        f"/v1/conversations/{cid}/resume",
        json={"decision": {"type": "accept"}},
        headers=auth(key),
    )
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["resumed"] is True and answer["interrupts"] is None
    assert [m["role"] for m in answer["messages"]] == ["tool", "assistant"]
    assert answer["messages"][-1]["content"] == "All done."
    after = client.get(f"/v1/conversations/{cid}", headers=auth(key)).json()
    assert after["turn_status"] == "idle" and after["interrupts"] == []
    assert after["messages_count"] == 4
    again = client.post(
        f"/v1/conversations/{cid}/resume", json={"decision": {"type": "accept"}}, headers=auth(key)
    )
    assert again.status_code == 409


def test_sse_interrupt_and_several_decisions(
    client: TestClient, llm: ScriptedLLM, key: str
) -> None:
    cid = client.post("/v1/conversations", json={"agent": "careful"}, headers=auth(key)).json()[
        "id"
    ]
    llm.enqueue(
        Reply(
            tool_calls=[
                ToolCall("current_time", {"timezone": "UTC"}),
                ToolCall("current_time", {"timezone": "Asia/Tokyo"}),
            ]
        ),
        Reply("Two clocks."),
    )
    streamed = client.post(
        f"/v1/conversations/{cid}/messages",
        json={"content": "two times"},
        headers={**auth(key), "Accept": "text/event-stream"},
    )
    events = sse(streamed.text)
    kinds = [k for k, _ in events]
    assert kinds[-2:] == ["interrupt", "final"], kinds
    pending = events[-2][1]["interrupts"]
    by_zone = {p["value"][0]["action_request"]["args"]["timezone"]: p["id"] for p in pending}
    one = client.post(
        f"/v1/conversations/{cid}/resume",
        json={"decision": {"type": "accept"}},
        headers=auth(key),
    )
    assert one.status_code == 422 and "answer them by id" in one.json()["detail"]
    resumed = client.post(
        f"/v1/conversations/{cid}/resume",
        json={
            "decisions": {
                by_zone["UTC"]: {"type": "edit", "args": {"args": {"timezone": "Europe/Paris"}}},
                by_zone["Asia/Tokyo"]: {"type": "response", "args": "one is enough"},
            }
        },
        headers={**auth(key), "Accept": "text/event-stream"},
    )
    events = sse(resumed.text)
    results = [d["content"] for k, d in events if k == "tool_result"]
    assert results[0].startswith("(run with arguments edited by the person")
    assert results[1] == "The person refused to run current_time. They said: one is enough"
    assert events[0][0] == "resumed" and events[-1][0] == "final"
    messages = client.get(f"/v1/conversations/{cid}/messages", headers=auth(key)).json()["items"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]


def test_resume_after_a_restart(
    db: Database, settings: Settings, client: TestClient, llm: ScriptedLLM, key: str
) -> None:
    turn = paused(client, llm, key, ToolCall("ask_person", {"question": "name?"}))
    (pending,) = turn["interrupts"]
    assert pending["value"] == {"question": "name?"} and pending["node"] == "tools"
    # another server process (a fresh runtime) picks the decision up from the checkpoint
    with TestClient(create_app(db, settings)) as fresh:
        done = fresh.post(
            f"/v1/conversations/{turn['id']}/resume",
            json={"decision": "Ada"},
            headers=auth(key),
        )
    assert done.status_code == 200, done.text
    assert done.json()["messages"][0]["content"] == "the person answered: Ada"
    items = client.get(f"/v1/conversations/{turn['id']}/messages", headers=auth(key)).json()
    assert [m["role"] for m in items["items"]] == ["user", "assistant", "tool", "assistant"]


def test_approve_tools_in_agent_definitions(client: TestClient, admin: str) -> None:
    body = {
        "name": "guarded",
        "system_prompt": "Careful.",
        "tools": ["current_time"],
        "approve_tools": ["current_time"],
    }
    created = client.post("/v1/agents", json=body, headers=auth(admin))
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["approve_tools"] == ["current_time"]
    stray = client.post(
        "/v1/agents",
        json={**body, "name": "stray", "approve_tools": ["search_memory"]},
        headers=auth(admin),
    )
    assert stray.status_code == 422
    assert "approve_tools entry 'search_memory'" in stray.json()["detail"]


def test_approve_tools_file_round_trip(settings: Settings) -> None:
    from core.registry.specs import load_agent_file

    spec = load_agent_file(Path(settings.project_dir) / "agents" / "careful.yaml")
    assert spec.approve_tools == ("current_time",)
    assert spec.to_json()["approve_tools"] == ["current_time"]
    plain = load_agent_file(Path(settings.project_dir) / "agents" / "assistant.yaml")
    assert "approve_tools" not in plain.to_json()


def test_a_pause_lost_in_a_crash_is_found_again(
    db: Database, client: TestClient, llm: ScriptedLLM, key: str
) -> None:
    from sqlalchemy import text

    turn = paused(client, llm, key, ToolCall("current_time", {}))
    # a crash between the checkpoint and recording the pause: only the checkpoint knows
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE conversations SET pending_interrupts = NULL WHERE id = :id"),
            {"id": turn["id"]},
        )
    cid = turn["id"]
    assert client.get(f"/v1/conversations/{cid}", headers=auth(key)).json()["turn_status"] == (
        "pending"
    )
    refused = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": "and now?"}, headers=auth(key)
    )
    assert refused.status_code == 409 and "waits for a decision" in refused.json()["detail"]
    again = client.get(f"/v1/conversations/{cid}", headers=auth(key)).json()
    assert again["turn_status"] == "interrupted" and again["messages_count"] == 2
    done = client.post(
        f"/v1/conversations/{cid}/resume", json={"decision": {"type": "accept"}}, headers=auth(key)
    )
    assert done.status_code == 200 and done.json()["messages"][-1]["content"] == "All done."


def test_a_retried_resume_only_completes(
    db: Database, client: TestClient, llm: ScriptedLLM, key: str
) -> None:
    from core.runtime.control import TurnControl, for_retry, pending_of

    turn = paused(client, llm, key, ToolCall("current_time", {}))
    control = TurnControl(resume={"type": "accept"}, interrupt_after=["tools"])
    with db.engine.connect() as conn:
        pending = pending_of(conn, turn["id"])
    assert pending is not None and for_retry(control, pending) == control
    client.post(
        f"/v1/conversations/{turn['id']}/resume",
        json={"decision": {"type": "accept"}},
        headers=auth(key),
    )
    with db.engine.connect() as conn:
        assert pending_of(conn, turn["id"]) is None
    # the first try took the answer: a second try keeps only the breakpoints
    assert for_retry(control, None) == TurnControl(interrupt_after=["tools"])
    assert TurnControl.from_json(control.to_json()) == control
