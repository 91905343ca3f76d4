"""Threads beyond the basics, with the real ``langgraph_sdk`` (sync and async): chosen
ids, copy, prune, ttl, state at a checkpoint, forks, every sort order."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, get_args

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.schema import ThreadSortBy
from typer.testing import CliRunner

from core.cli.main import app as cli
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from core.protocols.thread_ops import TtlSweeper
from tests.core.protocols.conftest import LiveServer


def say(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


@pytest.fixture(scope="module")
def bob(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["bob"])


def test_client_chosen_thread_id(alice: SyncLangGraphClient, bob: SyncLangGraphClient) -> None:
    tid = str(uuid.uuid4())
    thread = alice.threads.create(thread_id=tid, metadata={"n": 1}, if_exists="raise")
    assert thread["thread_id"] == tid and thread["metadata"]["n"] == 1
    with pytest.raises(httpx.HTTPStatusError) as taken:
        alice.threads.create(thread_id=tid, if_exists="raise")
    assert taken.value.response.status_code == 409
    assert "thread_id" in taken.value.response.json()["detail"]
    alice.runs.wait(tid, "assistant", input=say("hello"))
    again = alice.threads.create(thread_id=tid, metadata={"n": 2}, if_exists="do_nothing")
    assert again["metadata"]["n"] == 1  # the existing thread, untouched
    assert again["values"]["messages"][-1]["content"] == "echo: hello"
    # another user's id is never handed out, not even with do_nothing
    with pytest.raises(httpx.HTTPStatusError) as foreign:
        bob.threads.create(thread_id=tid, if_exists="do_nothing")
    assert foreign.value.response.status_code == 409
    with pytest.raises(httpx.HTTPStatusError) as bad:
        alice.threads.create(thread_id="not-a-uuid")
    assert bad.value.response.status_code == 422 and "thread_id" in bad.value.response.text


def test_copy_prune(alice: SyncLangGraphClient, bob: SyncLangGraphClient) -> None:
    source = alice.threads.create(metadata={"topic": "copy"})["thread_id"]
    alice.runs.wait(source, "assistant", input=say("one"))
    copied = alice.threads.copy(source)
    copy_id = copied["thread_id"]  # type: ignore[index]
    assert copy_id != source and copied["metadata"]["topic"] == "copy"  # type: ignore[index]
    assert len(alice.threads.get_history(copy_id, limit=50)) == len(
        alice.threads.get_history(source, limit=50)
    )
    # the copy goes its own way
    alice.runs.wait(copy_id, "assistant", input=say("two"))
    contents = [m["content"] for m in alice.threads.get_state(copy_id)["values"]["messages"]]
    assert contents == ["one", "echo: one", "two", "echo: two"]
    assert len(alice.threads.get_state(source)["values"]["messages"]) == 2
    with pytest.raises(httpx.HTTPStatusError) as foreign:
        bob.threads.copy(source)
    assert foreign.value.response.status_code == 404
    # keep_latest leaves one checkpoint and the state; delete removes the thread
    assert bob.threads.prune([copy_id]) == {"pruned_count": 0}  # not bob's
    assert alice.threads.prune([copy_id], strategy="keep_latest") == {"pruned_count": 1}
    assert len(alice.threads.get_history(copy_id, limit=50)) == 1
    assert len(alice.threads.get_state(copy_id)["values"]["messages"]) == 4
    assert alice.threads.prune([copy_id, source]) == {"pruned_count": 2}
    for gone in (copy_id, source):
        with pytest.raises(httpx.HTTPStatusError) as missing:
            alice.threads.get(gone)
        assert missing.value.response.status_code == 404


def test_ttl_expires_idle_threads(
    alice: SyncLangGraphClient, db: Database, use_database: Any
) -> None:
    short = alice.threads.create(ttl=0.01)["thread_id"]  # 0.6 s without activity
    kept = alice.threads.create(ttl={"ttl": 60, "strategy": "delete"})["thread_id"]
    later = alice.threads.create()["thread_id"]
    alice.threads.update(later, metadata={}, ttl=0.01)
    time.sleep(1.0)
    # agentry prune deletes them (a dry run only reports)...
    use_database(db)
    dry = CliRunner().invoke(cli, ["prune", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert {short, later} <= set(json.loads(dry.stdout)["expired_threads"])
    assert alice.threads.get(short)["thread_id"] == short
    real = CliRunner().invoke(cli, ["prune", "--json"])
    assert {short, later} <= set(json.loads(real.stdout)["expired_threads"])
    assert kept not in json.loads(real.stdout)["expired_threads"]
    for gone in (short, later):
        with pytest.raises(httpx.HTTPStatusError) as missing:
            alice.threads.get(gone)
        assert missing.value.response.status_code == 404
    assert alice.threads.get(kept)["thread_id"] == kept
    # ...and so does the server's sweeper (every minute; here every 0.2 s)
    another = alice.threads.create(ttl=0.01)["thread_id"]
    sweeper = TtlSweeper(db, interval=0.2)
    sweeper.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                alice.threads.get(another)
            except httpx.HTTPStatusError as gone:
                assert gone.response.status_code == 404
                break
            time.sleep(0.2)
        else:
            pytest.fail("the sweeper did not delete the expired thread")
    finally:
        sweeper.stop()
    with pytest.raises(httpx.HTTPStatusError) as bad:
        alice.threads.create(ttl={"ttl": 5, "strategy": "keep_latest"})
    assert bad.value.response.status_code == 422 and "ttl.strategy" in bad.value.response.text


def test_state_at_checkpoint_and_fork(alice: SyncLangGraphClient) -> None:
    tid = alice.threads.create()["thread_id"]
    alice.runs.wait(tid, "assistant", input=say("first"))
    alice.runs.wait(tid, "assistant", input=say("second"))
    history = alice.threads.get_history(tid, limit=50)
    # the checkpoint where the first turn had ended
    after_first = next(
        h
        for h in history
        if [m["content"] for m in h["values"].get("messages", [])][-1:] == ["echo: first"]
    )
    checkpoint = after_first["checkpoint"]
    by_id = alice.threads.get_state(tid, checkpoint_id=checkpoint["checkpoint_id"])
    by_post = alice.threads.get_state(tid, checkpoint=checkpoint)
    assert by_id["values"] == by_post["values"] == after_first["values"]
    assert by_id["checkpoint"]["checkpoint_id"] == checkpoint["checkpoint_id"]
    # update_state at that checkpoint forks: the thread goes on from there
    fork = alice.threads.update_state(
        tid,
        {"messages": [{"role": "user", "content": "instead"}]},
        checkpoint_id=checkpoint["checkpoint_id"],
    )
    state = alice.threads.get_state(tid)
    assert state["checkpoint"] == fork["checkpoint"]
    assert state["parent_checkpoint"]["checkpoint_id"] == checkpoint["checkpoint_id"]
    assert [m["content"] for m in state["values"]["messages"]] == [
        "first",
        "echo: first",
        "instead",
    ]
    with pytest.raises(httpx.HTTPStatusError) as missing:
        alice.threads.update_state(
            tid, {"messages": [{"role": "user", "content": "x"}]}, checkpoint_id="1f0000000-no-such"
        )
    assert missing.value.response.status_code == 404


def test_search_sorts_by_every_field_the_sdk_allows(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tag = str(uuid.uuid4())
        made = []
        for i in range(3):
            thread = await client.threads.create(metadata={"sort": tag, "i": i})
            made.append(thread["thread_id"])
        # the middle one gets the latest state change; the last one has no state at all
        await client.runs.wait(made[0], "assistant", input=say("a"))
        await client.runs.wait(made[1], "assistant", input=say("b"))
        for sort_by in get_args(ThreadSortBy):
            for order in ("asc", "desc"):
                found = await client.threads.search(
                    metadata={"sort": tag},
                    sort_by=sort_by,
                    sort_order=order,  # type: ignore[arg-type]
                )
                ids = [t["thread_id"] for t in found]
                assert sorted(ids) == sorted(made), (sort_by, order)
                if sort_by == "thread_id":
                    assert ids == sorted(made, reverse=order == "desc")
                if sort_by == "created_at":
                    assert ids == (made if order == "asc" else made[::-1])
                if sort_by == "state_updated_at":
                    expected = [made[1], made[0], made[2]]  # no state last
                    assert ids == (expected if order == "desc" else expected[::-1])

    asyncio.run(scenario())


def test_copy_and_chosen_id_async(live: LiveServer, keys: dict[str, str], llm: ScriptedLLM) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = str(uuid.uuid4())
        await client.threads.create(thread_id=tid)
        same = await client.threads.create(thread_id=tid, if_exists="do_nothing")
        assert same["thread_id"] == tid
        await client.runs.wait(tid, "assistant", input=say("async"))
        copied = await client.threads.copy(tid)
        state = await client.threads.get_state(copied["thread_id"])  # type: ignore[index]
        assert state["values"]["messages"][-1]["content"] == "echo: async"
        assert await client.threads.prune([tid]) == {"pruned_count": 1}

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("call", "operation"),
    [
        (lambda c: c.runs.create_batch([{"assistant_id": "assistant"}]), "runs.create_batch"),
        (lambda c: c.runs.cancel_many(run_ids=[str(uuid.uuid4())]), "runs.cancel_many"),
        (lambda c: list(c.threads.join_stream(str(uuid.uuid4()))), "threads.join_stream"),
    ],
)
def test_unserved_operations_name_themselves(
    alice: SyncLangGraphClient, call: Any, operation: str
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as refused:
        call(alice)
    response = refused.value.response
    assert response.status_code == 501
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["operation"] == operation
    assert operation in response.json()["detail"]


def test_unrouted_requests_name_method_and_path(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.http.post("/a2a/assistant", json={})
        assert refused.value.response.status_code == 501
        assert refused.value.response.json()["operation"] == "A2A"

    asyncio.run(scenario())
    headers = {"x-api-key": keys["alice"]}
    wrong = httpx.put(f"{live.url}/threads/{uuid.uuid4()}", headers=headers)
    assert wrong.status_code == 405 and wrong.headers["allow"]
    assert wrong.json()["detail"].startswith("PUT /threads/")
    nowhere = httpx.get(f"{live.url}/threads/{uuid.uuid4()}/nothing", headers=headers)
    assert nowhere.status_code == 404 and "GET /threads/" in nowhere.json()["detail"]
