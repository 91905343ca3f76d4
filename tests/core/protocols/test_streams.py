"""Streaming with the real ``langgraph_sdk`` (sync and async): every stream mode,
``on_run_created`` for every kind of run, keep-alives, heartbeats, disconnects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

KEEPALIVE = 0.3
USER = {"messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    """A server whose streams send a keep-alive after 0.3 s of silence."""
    settings = runtime_settings(llm.base_url, AGENTRY_SSE_KEEPALIVE=KEEPALIVE)
    with LiveServer(create_app(db, settings)) as server:
        yield server


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


def test_messages_debug_tasks_checkpoints(alice: SyncLangGraphClient, llm: ScriptedLLM) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("It is tea time."))
    parts = list(
        alice.runs.stream(
            tid,
            "assistant",
            input={"messages": [{"role": "user", "content": "time?"}]},
            stream_mode=["messages", "debug", "tasks", "checkpoints"],
        )
    )
    kinds = {p.event for p in parts}
    assert kinds == {
        "metadata",
        "messages/metadata",
        "messages/partial",
        "messages/complete",
        "debug",
        "tasks",
        "checkpoints",
    }, kinds
    state = alice.threads.get_state(tid)
    final = state["values"]["messages"]
    # messages: partials grow to the model's answer, under the id the state keeps
    partials = [p.data[0] for p in parts if p.event == "messages/partial"]
    answer = [m for m in partials if m["id"] == final[-1]["id"]]
    assert answer[-1]["content"] == "It is tea time." and answer[-1]["type"] == "ai"
    assert len(answer[0]["content"]) < len(answer[-1]["content"])
    metadata = [p.data for p in parts if p.event == "messages/metadata"]
    assert any(final[-1]["id"] in m for m in metadata)
    assert all(next(iter(m.values()))["metadata"]["langgraph_node"] for m in metadata)
    complete = [p.data[0] for p in parts if p.event == "messages/complete"]
    assert [m["type"] for m in complete] == ["ai", "tool", "ai"]
    assert [m["id"] for m in complete] == [m["id"] for m in final[1:]]
    assert complete[0]["tool_calls"][0]["name"] == "current_time"
    # tasks: a start (with triggers) and a result per node run
    tasks = [p.data for p in parts if p.event == "tasks"]
    starts = [t["name"] for t in tasks if "triggers" in t]
    results = [t for t in tasks if "result" in t]
    assert starts == ["agent.assistant", "tools", "agent.assistant"]
    assert [t["name"] for t in results] == starts and all(t["error"] is None for t in results)
    # checkpoints: every step's, the last one is the thread's state
    checkpoints = [p.data for p in parts if p.event == "checkpoints"]
    assert checkpoints[-1]["checkpoint"] == state["checkpoint"]
    assert checkpoints[-1]["values"]["messages"][-1]["content"] == "It is tea time."
    assert checkpoints[-1]["parent_checkpoint"]["checkpoint_id"]
    # debug: checkpoint, task and task_result entries
    debug = [p.data for p in parts if p.event == "debug"]
    assert {d["type"] for d in debug} == {"checkpoint", "task", "task_result"}
    assert all({"step", "timestamp", "payload"} <= set(d) for d in debug)
    last = [d for d in debug if d["type"] == "checkpoint"][-1]["payload"]
    assert last["checkpoint"] == state["checkpoint"]


def test_events_include_on_chain_stream(alice: SyncLangGraphClient) -> None:
    tid = alice.threads.create()["thread_id"]
    parts = list(alice.runs.stream(tid, "assistant", input=USER, stream_mode="events"))
    events = [p.data for p in parts if p.event == "events"]
    streamed = [(e["name"], e["data"]["chunk"]) for e in events if e["event"] == "on_chain_stream"]
    node, chunk = streamed[0]
    assert node == "agent.assistant" and chunk["messages"][-1]["content"] == "echo: hi"
    assert ("LangGraph", {"agent.assistant": chunk}) in streamed


def test_on_run_created_fires_for_every_kind_of_run(alice: SyncLangGraphClient) -> None:
    tid = alice.threads.create()["thread_id"]
    seen: list[dict[str, Any]] = []
    run = alice.runs.create(tid, "assistant", input=USER, on_run_created=seen.append)
    alice.runs.join(tid, run["run_id"])
    list(alice.runs.stream(tid, "assistant", input=USER, on_run_created=seen.append))
    alice.runs.wait(tid, "assistant", input=USER, on_run_created=seen.append)
    stateless = alice.runs.create(None, "assistant", input=USER, on_run_created=seen.append)
    list(alice.runs.stream(None, "assistant", input=USER, on_run_created=seen.append))
    alice.runs.wait(None, "assistant", input=USER, on_run_created=seen.append)
    assert len(seen) == 6
    assert seen[0] == {"run_id": run["run_id"], "thread_id": tid}
    assert all(m["thread_id"] == tid for m in seen[:3])
    assert seen[3] == {"run_id": stateless["run_id"], "thread_id": stateless["thread_id"]}
    assert len({m["run_id"] for m in seen}) == 6
    # the stateless runs' threads are gone once they ended
    assert all(m["thread_id"] != tid for m in seen[3:])


def test_idle_stream_sends_keep_alives_and_wait_heartbeats(
    live: LiveServer, keys: dict[str, str], alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    tid = alice.threads.create()["thread_id"]
    headers = {"x-api-key": keys["alice"]}
    body = {"assistant_id": "assistant", "input": USER}
    llm.enqueue(Reply("slow", delay=1.2))
    with httpx.stream(
        "POST", f"{live.url}/threads/{tid}/runs/stream", json=body, headers=headers, timeout=10
    ) as response:
        assert response.headers["location"].endswith("/stream")
        text = "".join(response.iter_text())
    assert text.count(": keep-alive\n\n") >= 2
    last = text.rstrip().split("\n\n")[-1]
    assert last.startswith("event: values")  # the run's last event came after the comments
    llm.enqueue(Reply("slow", delay=1.2))
    response = httpx.post(
        f"{live.url}/threads/{tid}/runs/wait", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 200
    assert response.text.startswith("\n\n")  # heartbeats while the model was thinking
    assert response.json()["messages"][-1]["content"] == "slow"
    assert response.headers["location"].endswith("/join")
    llm.enqueue(Reply("slow again", delay=1.0))  # the SDK reads through the heartbeats
    waited = alice.runs.wait(tid, "assistant", input=USER)
    assert waited["messages"][-1]["content"] == "slow again"  # type: ignore[index,call-overload]
    # the REST stream has keep-alives too
    cid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply("slow", delay=1.2))
    with httpx.stream(
        "POST",
        f"{live.url}/v1/conversations/{cid}/messages",
        json={"content": "hi"},
        headers={**headers, "accept": "text/event-stream"},
        timeout=10,
    ) as response:
        text = "".join(response.iter_text())
    assert ": keep-alive\n\n" in text and "event: final" in text
    # and the OpenAI-compatible one
    llm.enqueue(Reply("slow", delay=1.2))
    with httpx.stream(
        "POST",
        f"{live.url}/v1/chat/completions",
        json={"model": "assistant", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        headers=headers,
        timeout=10,
    ) as response:
        text = "".join(response.iter_text())
    assert ": keep-alive\n\n" in text and text.endswith("data: [DONE]\n\n")


def test_disconnect_cancels_by_default_and_continue_keeps_going(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    async def outcome(on_disconnect: str | None) -> str:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = (await client.threads.create())["thread_id"]
        llm.enqueue(Reply("late", delay=1.5))
        extra = {"on_disconnect": on_disconnect} if on_disconnect else {}
        stream = client.runs.stream(tid, "assistant", input=USER, **extra)  # type: ignore[arg-type]
        first = await stream.__anext__()
        await stream.aclose()  # the client goes away
        run_id = first.data["run_id"]
        for _ in range(100):
            run = await client.runs.get(tid, run_id)
            if run["status"] not in ("pending", "running"):
                return str(run["status"])
            await asyncio.sleep(0.1)
        return "still running"

    assert asyncio.run(outcome(None)) == "interrupted"
    assert asyncio.run(outcome("continue")) == "success"


def test_wait_cancels_when_the_client_leaves(
    live: LiveServer, keys: dict[str, str], alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply("late", delay=2.0))
    with httpx.stream(
        "POST",
        f"{live.url}/threads/{tid}/runs/wait",
        json={"assistant_id": "assistant", "input": USER},
        headers={"x-api-key": keys["alice"]},
        timeout=10,
    ) as response:
        assert next(response.iter_bytes()).strip() == b""  # a heartbeat; then the client leaves
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        runs = alice.runs.list(tid)
        if runs and runs[0]["status"] not in ("pending", "running"):
            break
        time.sleep(0.1)
    assert runs[0]["status"] == "interrupted"


def test_rest_stream_left_by_its_client_stops_the_turn(
    live: LiveServer, keys: dict[str, str], alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    cid = alice.threads.create()["thread_id"]
    headers = {"x-api-key": keys["alice"], "accept": "text/event-stream"}
    url = f"{live.url}/v1/conversations/{cid}/messages"
    llm.enqueue(Reply("never streamed", delay=1.0))
    with httpx.stream("POST", url, json={"content": "hi"}, headers=headers, timeout=10) as r:
        first = next(r.iter_lines())
    assert first == "event: message"  # the user's message; then the client leaves
    # the turn stops at its next event and releases the conversation: no 409 for long
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = httpx.post(url, json={"content": "again"}, headers={"x-api-key": keys["alice"]})
        if answer.status_code != 409:
            break
        time.sleep(0.2)
    assert answer.status_code == 200
    # the cut turn's answer was not stored by it: this call wrote it from the checkpoint
    # (as after a crash) before running the new message
    contents = [m["content"] for m in answer.json()["messages"]]
    assert contents == ["never streamed", "again", "echo: again"]


def test_async_client_modes_and_on_run_created(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = (await client.threads.create())["thread_id"]
        seen: list[Any] = []
        parts = [
            p
            async for p in client.runs.stream(
                tid,
                "assistant",
                input=USER,
                stream_mode=["messages", "tasks", "checkpoints", "debug", "events"],
                on_run_created=seen.append,
            )
        ]
        kinds = [p.event for p in parts]
        for kind in ("messages/partial", "messages/complete", "tasks", "checkpoints", "debug"):
            assert kind in kinds, kind
        streams = [p.data for p in parts if p.event == "events"]
        assert any(e["event"] == "on_chain_stream" for e in streams)
        await client.runs.wait(tid, "assistant", input=USER, on_run_created=seen.append)
        run = await client.runs.create(None, "assistant", input=USER, on_run_created=seen.append)
        assert [m["run_id"] for m in seen][-1] == run["run_id"]
        assert seen[0] == {"run_id": parts[0].data["run_id"], "thread_id": tid}
        assert len(seen) == 3

    asyncio.run(scenario())
