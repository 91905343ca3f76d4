"""Durable runs with the real ``langgraph_sdk``: double-texting, any server, restarts, prune."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from sqlalchemy import text

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.runtime.retention import prune_checkpoints
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings


def said(content: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


@pytest.fixture(scope="module")
def other(db: Database, llm: ScriptedLLM) -> Any:
    """A second server on the same database (another process, as far as runs can tell)."""
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as server:
        yield server


def model_called(llm: ScriptedLLM, before: int) -> None:
    """Wait until a worker's model call arrived (the run is really running)."""
    deadline = time.monotonic() + 10
    while len(llm.chat_requests()) == before:
        assert time.monotonic() < deadline, "no model call"
        time.sleep(0.02)


def contents(client: SyncLangGraphClient, tid: str) -> list[str]:
    messages = client.threads.get_state(tid)["values"]["messages"]
    return [m["content"] for m in messages]


def stored(live: LiveServer, key: str, tid: str) -> list[str]:
    """The conversation's message log (Agentry's own API)."""
    listed = httpx.get(
        f"{live.url}/v1/conversations/{tid}/messages",
        headers={"Authorization": f"Bearer {key}"},
        params={"limit": 100},
    ).json()["items"]
    return [m["content"] for m in listed]


def test_reject_refuses_a_second_run(alice: SyncLangGraphClient, llm: ScriptedLLM) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply("slow", delay=0.8))
    first = alice.runs.create(tid, "assistant", input=said("first"))
    with pytest.raises(httpx.HTTPStatusError) as busy:
        alice.runs.create(tid, "assistant", input=said("second"), multitask_strategy="reject")
    assert busy.value.response.status_code == 409
    assert "multitask_strategy" in busy.value.response.text
    alice.runs.join(tid, first["run_id"])
    assert contents(alice, tid) == ["first", "slow"]
    assert [r["status"] for r in alice.runs.list(tid)] == ["success"]


def test_enqueue_runs_after_the_running_one(
    alice: SyncLangGraphClient, llm: ScriptedLLM, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply("first answer", delay=0.8))
    first = alice.runs.create(tid, "assistant", input=said("first"))
    second = alice.runs.create(tid, "assistant", input=said("second"), multitask_strategy="enqueue")
    assert second["multitask_strategy"] == "enqueue"
    assert alice.runs.get(tid, second["run_id"])["status"] == "pending"
    assert alice.threads.get(tid)["status"] == "busy"
    out = alice.runs.join(tid, second["run_id"])
    assert [m["content"] for m in out["messages"]] == [  # type: ignore[index]
        "first",
        "first answer",
        "second",
        "echo: second",
    ]
    runs = {r["run_id"]: r["status"] for r in alice.runs.list(tid)}
    assert runs == {first["run_id"]: "success", second["run_id"]: "success"}
    assert stored(live, keys["alice"], tid) == contents(alice, tid)
    assert alice.threads.get(tid)["status"] == "idle"


def test_interrupt_stops_the_running_one(
    alice: SyncLangGraphClient, llm: ScriptedLLM, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = alice.threads.create()["thread_id"]
    before = len(llm.chat_requests())
    llm.enqueue(Reply("first answer", delay=0.8))
    first = alice.runs.create(tid, "assistant", input=said("first"))
    model_called(llm, before)
    second = alice.runs.create(
        tid, "assistant", input=said("second"), multitask_strategy="interrupt"
    )
    out = alice.runs.join(tid, second["run_id"])
    assert out["messages"][-1]["content"] == "echo: second"  # type: ignore[index]
    assert alice.runs.get(tid, first["run_id"])["status"] == "interrupted"
    assert alice.runs.get(tid, second["run_id"])["status"] == "success"
    state = contents(alice, tid)
    assert state[0] == "first" and state[-2:] == ["second", "echo: second"]
    # the message log and the state agree: nothing lost, nothing twice
    assert stored(live, keys["alice"], tid) == state
    assert alice.threads.get(tid)["status"] == "idle"


def test_rollback_forks_from_before_the_run_and_keeps_history(
    alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    tid = alice.threads.create()["thread_id"]
    alice.runs.wait(tid, "assistant", input=said("zero"))
    before = len(llm.chat_requests())
    llm.enqueue(Reply("first answer", delay=0.8))
    first = alice.runs.create(tid, "assistant", input=said("first"))
    model_called(llm, before)
    second = alice.runs.create(
        tid, "assistant", input=said("second"), multitask_strategy="rollback"
    )
    alice.runs.join(tid, second["run_id"])
    assert contents(alice, tid) == ["zero", "echo: zero", "second", "echo: second"]
    # the rolled-back run is kept (LangGraph deletes it) and marked interrupted
    assert alice.runs.get(tid, first["run_id"])["status"] == "interrupted"
    history = alice.threads.get_history(tid, limit=100)
    seen = {m["content"] for s in history for m in s["values"].get("messages", [])}
    assert "first" in seen  # nothing deleted: the run's checkpoints are in the history
    assert alice.threads.get(tid)["status"] == "idle"


def test_cancel_a_pending_run_never_starts_it(alice: SyncLangGraphClient, llm: ScriptedLLM) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply("first answer", delay=0.8))
    first = alice.runs.create(tid, "assistant", input=said("first"))
    queued = alice.runs.create(tid, "assistant", input=said("never"), multitask_strategy="enqueue")
    alice.runs.cancel(tid, queued["run_id"])
    assert alice.runs.get(tid, queued["run_id"])["status"] == "interrupted"
    alice.runs.join(tid, first["run_id"])
    assert contents(alice, tid) == ["first", "first answer"]


def test_any_server_joins_streams_and_cancels(
    live: LiveServer, other: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    async def scenario() -> None:
        a = get_client(url=live.url, api_key=keys["alice"])
        b = get_client(url=other.url, api_key=keys["alice"])
        tid = (await a.threads.create())["thread_id"]
        run = await a.runs.create(tid, "assistant", input=said("across"), stream_mode="updates")
        out = await b.runs.join(tid, run["run_id"])
        assert out["messages"][-1]["content"] == "echo: across"  # type: ignore[index]
        parts = [p async for p in b.runs.join_stream(tid, run["run_id"])]
        assert parts[0].event == "metadata" and parts[-1].event == "updates"
        assert [p.id for p in parts] == [str(i) for i in range(len(parts))]
        rest = [p async for p in b.runs.join_stream(tid, run["run_id"], last_event_id="0")]
        assert [p.id for p in rest] == [p.id for p in parts[1:]]
        assert [r["run_id"] for r in await b.runs.list(tid)] == [run["run_id"]]
        # a run started on A, cancelled on B, wherever a worker holds it
        before = len(llm.chat_requests())
        llm.enqueue(Reply("too slow", delay=1.5))
        slow = await a.runs.create(tid, "assistant", input=said("slow"))
        while len(llm.chat_requests()) == before:
            await asyncio.sleep(0.02)
        assert (await b.threads.get(tid))["status"] == "busy"
        cancelled = await b.runs.cancel(tid, slow["run_id"], wait=True)
        assert cancelled["status"] == "interrupted"
        assert (await a.runs.get(tid, slow["run_id"]))["status"] == "interrupted"

    asyncio.run(scenario())


def test_runs_outlive_the_server_that_ran_them(
    db: Database, llm: ScriptedLLM, keys: dict[str, str]
) -> None:
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as first:
        client = get_sync_client(url=first.url, api_key=keys["alice"])
        tid = client.threads.create()["thread_id"]
        run = client.runs.wait(tid, "assistant", input=said("remember"))
        run_id = client.runs.list(tid)[0]["run_id"]
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as restarted:
        client = get_sync_client(url=restarted.url, api_key=keys["alice"])
        assert client.runs.get(tid, run_id)["status"] == "success"
        assert client.runs.join(tid, run_id) == run
        replay = list(client.runs.join_stream(tid, run_id))
        assert replay[-1].data["messages"][-1]["content"] == "echo: remember"


def test_prune_removes_run_events_of_deleted_threads(
    alice: SyncLangGraphClient, db: Database
) -> None:
    tid = alice.threads.create()["thread_id"]
    alice.runs.wait(tid, "assistant", input=said("soon gone"))
    alice.threads.delete(tid)
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE conversations SET deleted_at = now() - interval '40 days' WHERE id = :i"),
            {"i": tid},
        )
        events = conn.execute(
            text(
                "SELECT count(*) FROM run_events e JOIN runs r ON r.id = e.run_id"
                " WHERE r.thread_id = :i"
            ),
            {"i": tid},
        ).scalar_one()
        assert events > 0
        report = prune_checkpoints(conn, keep=20, deleted_after_days=30)
        assert report.runs == 1 and report.run_events >= events
        left = conn.execute(text("SELECT count(*) FROM runs WHERE thread_id = :i"), {"i": tid})
        assert left.scalar_one() == 0


def test_async_double_texting_with_concurrent_creates(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        # reject: of two creates sent at once, exactly one runs (the per-thread lock)
        tid = (await client.threads.create())["thread_id"]
        llm.clear()
        llm.enqueue(Reply("only answer", delay=0.5))
        both = await asyncio.gather(
            client.runs.create(tid, "assistant", input=said("a")),
            client.runs.create(tid, "assistant", input=said("b")),
            return_exceptions=True,
        )
        refused = [r for r in both if isinstance(r, httpx.HTTPStatusError)]
        made = [r for r in both if isinstance(r, dict)]
        assert len(made) == 1 and [e.response.status_code for e in refused] == [409]
        await client.runs.join(tid, made[0]["run_id"])
        # enqueue: both run, one after the other, each answering its own message
        tid = (await client.threads.create())["thread_id"]
        runs = await asyncio.gather(
            *(
                client.runs.create(tid, "assistant", input=said(w), multitask_strategy="enqueue")
                for w in ("one", "two")
            )
        )
        for run in runs:
            await client.runs.join(tid, run["run_id"])
        state = (await client.threads.get_state(tid))["values"]["messages"]
        texts = [m["content"] for m in state]
        assert sorted(texts) == sorted(["one", "echo: one", "two", "echo: two"])
        assert texts[1] == f"echo: {texts[0]}" and texts[3] == f"echo: {texts[2]}"
        # interrupt and rollback: a second run while the first one is answering
        for strategy, kept in (("interrupt", True), ("rollback", False)):
            tid = (await client.threads.create())["thread_id"]
            llm.enqueue(Reply("cut short", delay=0.8))
            first = await client.runs.create(tid, "assistant", input=said(f"{strategy} 1"))
            while not any(f"{strategy} 1" in str(r.get("messages")) for r in llm.chat_requests()):
                await asyncio.sleep(0.02)
            second = await client.runs.create(
                tid, "assistant", input=said(f"{strategy} 2"), multitask_strategy=strategy
            )
            out = await client.runs.join(tid, second["run_id"])
            assert out["messages"][-1]["content"] == f"echo: {strategy} 2"  # type: ignore[index]
            assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
            texts = [m["content"] for m in out["messages"]]  # type: ignore[index]
            assert (f"{strategy} 1" in texts) is kept  # rollback forked from before it

    asyncio.run(scenario())
