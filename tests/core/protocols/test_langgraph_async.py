"""The Agent Protocol with the real async ``langgraph_sdk`` client: background runs,
join, cancel, concurrent runs, the store."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from langgraph_sdk import get_client

from core.devtools.scripted_llm import Reply, ScriptedLLM
from tests.core.protocols.conftest import LiveServer

USER = {"messages": [{"role": "user", "content": "hi there"}]}


def test_async_thread_stream_wait_state(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        thread = await client.threads.create()
        tid = thread["thread_id"]
        parts = [
            p
            async for p in client.runs.stream(
                tid, "assistant", input=USER, stream_mode="messages-tuple"
            )
        ]
        assert parts[0].event == "metadata"
        chunks = [p.data[0] for p in parts if p.event == "messages"]
        assert "".join(c["content"] for c in chunks) == "echo: hi there"
        # chunks carry the id of the message the state keeps (clients merge by id)
        state_now = await client.threads.get_state(tid)
        assert {c["id"] for c in chunks} == {state_now["values"]["messages"][-1]["id"]}
        out = await client.runs.wait(
            tid, "assistant", input={"messages": [{"role": "user", "content": "more"}]}
        )
        assert isinstance(out, dict) and out["messages"][-1]["content"] == "echo: more"
        state = await client.threads.get_state(tid)
        assert [m["content"] for m in state["values"]["messages"]] == [
            "hi there",
            "echo: hi there",
            "more",
            "echo: more",
        ]
        history = await client.threads.get_history(tid, limit=3)
        assert len(history) == 3
        before = await client.threads.get_history(tid, limit=2, before=history[0]["checkpoint"])
        assert before[0]["checkpoint"]["checkpoint_id"] == history[1]["checkpoint"]["checkpoint_id"]

    asyncio.run(scenario())


def test_background_run_join_and_list(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = (await client.threads.create())["thread_id"]
        run = await client.runs.create(tid, "assistant", input=USER)
        assert run["status"] in ("pending", "running", "success")
        joined = await client.runs.join(tid, run["run_id"])
        assert joined["messages"][-1]["content"] == "echo: hi there"
        done = await client.runs.get(tid, run["run_id"])
        assert done["status"] == "success"
        listed = await client.runs.list(tid)
        assert [r["run_id"] for r in listed] == [run["run_id"]]
        # a finished run's stream can still be joined: it replays the events
        replay = [p async for p in client.runs.join_stream(tid, run["run_id"])]
        assert replay[0].event == "metadata" and replay[-1].event == "values"
        await client.runs.delete(tid, run["run_id"])
        assert await client.runs.list(tid) == []
        assert await client.threads.count(metadata={"graph_id": "assistant"}) >= 1

    asyncio.run(scenario())


def test_one_run_at_a_time_and_cancel(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = (await client.threads.create())["thread_id"]
        llm.clear()  # no reply left over by an earlier test
        llm.enqueue(Reply("slow answer", delay=1.5))
        slow = {"messages": [{"role": "user", "content": f"slow {tid}"}]}
        run = await client.runs.create(tid, "assistant", input=slow, stream_mode="messages-tuple")
        with pytest.raises(httpx.HTTPStatusError) as busy:
            await client.runs.create(tid, "assistant", input=USER)
        assert busy.value.response.status_code == 409
        thread = await client.threads.get(tid)
        assert thread["status"] == "busy"
        # Cancel only once this run's model call has begun (the scripted model took the
        # slow reply for it); a cancel before that would leave the reply to the next run.
        while not any(f"slow {tid}" in str(r.get("messages")) for r in llm.chat_requests()):
            await asyncio.sleep(0.02)
        assert llm.pending() == 0
        await client.runs.cancel(tid, run["run_id"], wait=True)
        cancelled = await client.runs.get(tid, run["run_id"])
        assert cancelled["status"] == "interrupted"
        # the thread is usable again; the new input starts from the state reached
        out = await client.runs.wait(
            tid, "assistant", input={"messages": [{"role": "user", "content": "after"}]}
        )
        assert isinstance(out, dict)
        assert out["messages"][-1]["content"] == "echo: after"

    asyncio.run(scenario())


def test_async_store(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        await client.store.put_item(["prefs"], "color", {"favourite": "teal green"})
        item = await client.store.get_item(["prefs"], "color")
        assert item["value"] == {"favourite": "teal green"}
        hits = (await client.store.search_items(["prefs"], query="teal"))["items"]
        assert [h["key"] for h in hits] == ["color"]
        spaces = (await client.store.list_namespaces())["namespaces"]
        assert ["prefs"] in spaces
        await client.store.delete_item(["prefs"], "color")
        assert (await client.store.search_items(["prefs"]))["items"] == []

    asyncio.run(scenario())


def test_disconnect_cancels_when_asked(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = (await client.threads.create())["thread_id"]
        llm.enqueue(Reply("never seen", delay=2.0))
        stream = client.runs.stream(tid, "assistant", input=USER, on_disconnect="cancel")
        first = await stream.__anext__()
        assert first.event == "metadata"
        await stream.aclose()  # the client goes away
        run_id = first.data["run_id"]
        for _ in range(100):
            run = await client.runs.get(tid, run_id)
            if run["status"] != "running" and run["status"] != "pending":
                break
            await asyncio.sleep(0.1)
        assert run["status"] == "interrupted"

    asyncio.run(scenario())
