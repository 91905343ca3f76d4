"""The Agent Protocol with the real ``langgraph_sdk`` sync client against a live server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from config import get_settings
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.memory.embeddings import get_embedder
from core.memory.indexer import embed_pending
from tests.core.protocols.conftest import LiveServer


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


@pytest.fixture(scope="module")
def bob(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["bob"])


def test_assistants_are_the_agents(alice: SyncLangGraphClient) -> None:
    found = alice.assistants.search(limit=50)
    names = [a["assistant_id"] for a in found]
    assert "assistant" in names
    assistant = alice.assistants.get("assistant")
    assert assistant["graph_id"] == "assistant" and assistant["description"]
    graph = alice.assistants.get_graph("assistant")
    node_ids = {n["id"] for n in graph["nodes"]}
    assert {"agent.assistant", "tools"} <= node_ids
    schemas = alice.assistants.get_schemas("assistant")
    assert "messages" in schemas["input_schema"]["properties"]
    with pytest.raises(httpx.HTTPStatusError) as missing:
        alice.assistants.get("no-such-agent")
    assert missing.value.response.status_code == 404


def test_stream_a_run_in_every_mode(alice: SyncLangGraphClient, llm: ScriptedLLM) -> None:
    thread = alice.threads.create(metadata={"topic": "time"})
    tid = thread["thread_id"]
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("It is tea time."))
    parts = list(
        alice.runs.stream(
            tid,
            "assistant",
            input={"messages": [{"role": "user", "content": "what time is it?"}]},
            stream_mode=["values", "updates", "messages-tuple", "events"],
        )
    )
    kinds = [p.event for p in parts]
    assert kinds[0] == "metadata" and parts[0].data["run_id"]
    assert {"values", "updates", "messages", "events"} <= set(kinds), kinds
    values = [p.data for p in parts if p.event == "values"]
    assert [m["type"] for m in values[0]["messages"]] == ["human"]
    assert values[0]["messages"][0]["content"] == "what time is it?"
    final = values[-1]["messages"]
    assert [m["type"] for m in final] == ["human", "ai", "tool", "ai"]
    assert final[1]["tool_calls"][0]["name"] == "current_time"
    assert final[-1]["content"] == "It is tea time."
    updates = [p.data for p in parts if p.event == "updates"]
    assert [next(iter(u)) for u in updates] == ["agent.assistant", "tools", "agent.assistant"]
    tokens = [p.data for p in parts if p.event == "messages"]
    text = "".join(
        chunk["content"] for chunk, meta in tokens if meta["langgraph_node"] == "agent.assistant"
    )
    assert "It is tea time." in text
    events = [p.data["event"] for p in parts if p.event == "events"]
    assert events[0] == "on_chain_start" and events[-1] == "on_chain_end"
    assert "on_chat_model_stream" in events

    state = alice.threads.get_state(tid)
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai", "tool", "ai"]
    assert state["next"] == [] and state["checkpoint"]["checkpoint_id"]
    history = alice.threads.get_history(tid, limit=20)
    assert len(history) >= 4
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert len(history[-1]["values"].get("messages", [])) < 4  # oldest first at the end
    older = alice.threads.get_state(tid, checkpoint_id=history[2]["checkpoint"]["checkpoint_id"])
    assert len(older["values"]["messages"]) < 4
    again = alice.threads.get(tid)
    assert again["metadata"]["topic"] == "time" and again["status"] == "idle"
    assert len(again["values"]["messages"]) == 4


def test_wait_continue_and_read(
    alice: SyncLangGraphClient, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = alice.threads.create()["thread_id"]
    first = alice.runs.wait(
        tid, "assistant", input={"messages": [{"role": "user", "content": "hello"}]}
    )
    assert first["messages"][-1]["content"] == "echo: hello"  # type: ignore[index]
    second = alice.runs.wait(
        tid, "assistant", input={"messages": [{"type": "human", "content": "again"}]}
    )
    assert [m["content"] for m in second["messages"]] == [  # type: ignore[index]
        "hello",
        "echo: hello",
        "again",
        "echo: again",
    ]
    runs = alice.runs.list(tid)
    assert len(runs) == 2 and all(r["status"] == "success" for r in runs)
    assert alice.runs.get(tid, runs[0]["run_id"])["run_id"] == runs[0]["run_id"]
    # the same conversation through Agentry's own API
    listed = httpx.get(
        f"{live.url}/v1/conversations/{tid}/messages",
        headers={"Authorization": f"Bearer {keys['alice']}"},
    ).json()["items"]
    assert [m["content"] for m in listed] == ["hello", "echo: hello", "again", "echo: again"]


def test_threads_search_update_delete(alice: SyncLangGraphClient) -> None:
    tid = alice.threads.create(metadata={"project": "blue"})["thread_id"]
    other = alice.threads.create(metadata={"project": "green"})["thread_id"]
    found = alice.threads.search(metadata={"project": "blue"})
    assert [t["thread_id"] for t in found] == [tid]
    updated = alice.threads.update(tid, metadata={"label": "x"})
    assert updated["metadata"]["label"] == "x" and updated["metadata"]["project"] == "blue"
    alice.threads.delete(other)
    with pytest.raises(httpx.HTTPStatusError) as gone:
        alice.threads.get(other)
    assert gone.value.response.status_code == 404


def test_update_state_adds_messages(alice: SyncLangGraphClient) -> None:
    tid = alice.threads.create()["thread_id"]
    alice.threads.update_state(
        tid,
        {
            "messages": [
                {"role": "user", "content": "remember: blue"},
                {"role": "assistant", "content": "noted"},
            ]
        },
    )
    state = alice.threads.get_state(tid)
    assert [m["content"] for m in state["values"]["messages"]] == ["remember: blue", "noted"]
    out = alice.runs.wait(tid, "assistant", input={"messages": [{"role": "user", "content": "go"}]})
    assert [m["content"] for m in out["messages"]][-2:] == ["go", "echo: go"]  # type: ignore[index]
    with pytest.raises(httpx.HTTPStatusError) as bad:
        alice.threads.update_state(tid, {"agent": "mechanic"})
    assert bad.value.response.status_code == 422


def test_stateless_runs(alice: SyncLangGraphClient) -> None:
    out = alice.runs.wait(
        None, "assistant", input={"messages": [{"role": "user", "content": "once"}]}
    )
    assert out["messages"][-1]["content"] == "echo: once"  # type: ignore[index]
    parts = list(
        alice.runs.stream(
            None, "assistant", input={"messages": [{"role": "user", "content": "twice"}]}
        )
    )
    assert (
        parts[-1].event == "values" and parts[-1].data["messages"][-1]["content"] == "echo: twice"
    )
    # stateless threads are deleted at the end (on_completion 'delete', the default)
    assert all(
        not any(m.get("content") in ("once", "twice") for m in t["values"].get("messages", []))
        for t in alice.threads.search(limit=100)
    )


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("interrupt_before", ["no-such-node"], "interrupt_before"),  # supported; no such node
        ("stream_mode", "tools", "stream_mode"),
        ("webhook", "http://example.org/hook", "webhook"),
        ("multitask_strategy", "sometimes", "multitask_strategy"),
        ("checkpoint_id", "abc", "checkpoint_id"),
    ],
)
def test_unsupported_options_are_422(
    alice: SyncLangGraphClient, option: str, value: Any, named: str
) -> None:
    tid = alice.threads.create()["thread_id"]
    with pytest.raises(httpx.HTTPStatusError) as refused:
        alice.runs.create(
            tid,
            "assistant",
            input={"messages": [{"role": "user", "content": "x"}]},
            **{option: value},
        )
    assert refused.value.response.status_code == 422
    assert named in refused.value.response.text


def test_another_users_thread_is_404(alice: SyncLangGraphClient, bob: SyncLangGraphClient) -> None:
    tid = alice.threads.create()["thread_id"]
    for call in (
        lambda: bob.threads.get(tid),
        lambda: bob.threads.get_state(tid),
        lambda: bob.threads.get_history(tid),
        lambda: bob.runs.wait(
            tid, "assistant", input={"messages": [{"role": "user", "content": "x"}]}
        ),
        lambda: bob.runs.list(tid),
    ):
        with pytest.raises(httpx.HTTPStatusError) as hidden:
            call()
        assert hidden.value.response.status_code == 404
    assert tid not in [t["thread_id"] for t in bob.threads.search(limit=100)]


def test_bearer_and_x_api_key_both_work(live: LiveServer, keys: dict[str, str]) -> None:
    bearer = httpx.post(
        f"{live.url}/threads/search", json={}, headers={"Authorization": f"Bearer {keys['alice']}"}
    )
    header = httpx.post(f"{live.url}/threads/search", json={}, headers={"x-api-key": keys["alice"]})
    anonymous = httpx.post(f"{live.url}/threads/search", json={})
    wrong = httpx.post(f"{live.url}/threads/search", json={}, headers={"x-api-key": "agk_nope"})
    assert bearer.status_code == header.status_code == 200
    assert bearer.json() == header.json()
    assert anonymous.status_code == wrong.status_code == 401


def embed_everything(db: Database) -> None:
    """What the server's embedding worker does in the background, done now."""
    while True:
        with db.engine.begin() as conn:
            if not embed_pending(conn, get_embedder(get_settings())):
                return


def test_store(alice: SyncLangGraphClient, bob: SyncLangGraphClient, db: Database) -> None:
    alice.store.put_item(["notes", "work"], "a", {"text": "the quarterly report is due friday"})
    alice.store.put_item(["notes", "home"], "b", {"text": "buy oat milk", "kind": "shopping"})
    alice.store.put_item(["notes", "home"], "c", {"text": "call the plumber", "kind": "chore"})
    item = alice.store.get_item(["notes", "work"], "a")
    assert item["value"] == {"text": "the quarterly report is due friday"}
    assert item["namespace"] == ["notes", "work"]
    home = alice.store.search_items(["notes", "home"])["items"]
    assert sorted(i["key"] for i in home) == ["b", "c"]
    chores = alice.store.search_items(["notes"], filter={"kind": "chore"})["items"]
    assert [i["key"] for i in chores] == ["c"]
    embed_everything(db)
    ranked = alice.store.search_items(["notes"], query="quarterly report")["items"]
    assert ranked[0]["key"] == "a" and ranked[0]["score"] > 0
    assert alice.store.list_namespaces(prefix=["notes"])["namespaces"] == [
        ["notes", "home"],
        ["notes", "work"],
    ]
    assert alice.store.list_namespaces(max_depth=1)["namespaces"] == [["notes"]]
    assert alice.store.list_namespaces(suffix=["work"])["namespaces"] == [["notes", "work"]]
    # bob has a store of his own
    assert bob.store.search_items(["notes"])["items"] == []
    assert bob.store.search_items(["notes"], query="quarterly")["items"] == []
    with pytest.raises(httpx.HTTPStatusError) as hidden:
        bob.store.get_item(["notes", "work"], "a")
    assert hidden.value.response.status_code == 404
    alice.store.put_item(["notes", "work"], "a", {"text": "report moved to monday"})
    assert alice.store.get_item(["notes", "work"], "a")["value"]["text"].endswith("monday")
    embed_everything(db)
    assert alice.store.search_items(["notes"], query="monday")["items"][0]["key"] == "a"
    alice.store.delete_item(["notes", "work"], "a")
    with pytest.raises(httpx.HTTPStatusError):
        alice.store.get_item(["notes", "work"], "a")
    with pytest.raises(httpx.HTTPStatusError) as ttl:
        alice.store.put_item(["notes"], "t", {"x": 1}, ttl=5)
    assert ttl.value.response.status_code == 422 and "ttl" in ttl.value.response.text


def test_background_stateless_run_and_agent_choice(
    live: LiveServer, keys: dict[str, str], alice: SyncLangGraphClient
) -> None:
    run = alice.runs.create(
        None, "assistant", input={"messages": [{"role": "user", "content": "bg"}]}
    )
    assert run["assistant_id"] == "assistant" and run["thread_id"]
    # an admin-only agent is refused to a user
    with pytest.raises(httpx.HTTPStatusError) as forbidden:
        alice.runs.wait(None, "mechanic", input={"messages": [{"role": "user", "content": "x"}]})
    assert forbidden.value.response.status_code == 403
    # asking for another agent on a later run switches the thread to it
    admin = get_sync_client(url=live.url, api_key=keys["admin"])
    tid = admin.threads.create(graph_id="assistant")["thread_id"]
    admin.runs.wait(tid, "assistant", input={"messages": [{"role": "user", "content": "one"}]})
    admin.runs.wait(tid, "mechanic", input={"messages": [{"role": "user", "content": "two"}]})
    switches = httpx.get(
        f"{live.url}/v1/conversations/{tid}/switches",
        headers={"Authorization": f"Bearer {keys['admin']}"},
    ).json()
    assert [(s["from_agent"], s["to_agent"]) for s in switches] == [
        (None, "assistant"),
        ("assistant", "mechanic"),
    ]
    assert admin.threads.get(tid)["metadata"]["assistant_id"] == "mechanic"


def test_agent_chat_ui_style_run_and_resumable_join(alice: SyncLangGraphClient) -> None:
    """What Agent Chat UI sends: values + messages-tuple + custom, subgraphs, resumable."""
    tid = alice.threads.create()["thread_id"]
    parts = list(
        alice.runs.stream(
            tid,
            "assistant",
            input={"messages": [{"type": "human", "content": [{"type": "text", "text": "ui"}]}]},
            stream_mode=["values", "messages-tuple", "custom"],
            stream_subgraphs=True,
            stream_resumable=True,
            on_disconnect="continue",
        )
    )
    assert parts[-1].event == "values"
    assert parts[-1].data["messages"][-1]["content"] == "echo: ui"
    assert not [p for p in parts if p.event == "custom"]  # nodes write no custom data
    assert [p.id for p in parts] == [str(i) for i in range(len(parts))]
    run_id = parts[0].data["run_id"]
    # rejoining after event 1 replays the rest only
    rest = list(alice.runs.join_stream(tid, run_id, last_event_id="1"))
    assert [p.id for p in rest] == [p.id for p in parts[2:]]
    assert rest[-1].data == parts[-1].data


def test_info_is_public(live: LiveServer) -> None:
    info = httpx.get(f"{live.url}/info")
    assert info.status_code == 200
    assert info.json()["flags"]["assistants"] is True
    assert info.json()["flags"]["crons"] is True


def test_failing_model_then_resume_without_input(
    alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(*[Reply(status=503) for _ in range(6)])
    with pytest.raises(Exception) as failed:
        alice.runs.wait(tid, "assistant", input={"messages": [{"role": "user", "content": "hi"}]})
    assert "no model available" in str(failed.value).lower()
    llm.clear()  # the failures the router's attempts did not use
    run = alice.runs.list(tid)[0]
    assert run["status"] == "error"
    assert alice.threads.get(tid)["status"] == "error"  # the turn is pending
    # a run without input completes the interrupted turn from its checkpoint
    out = alice.runs.wait(tid, "assistant")
    assert [m["content"] for m in out["messages"]] == ["hi", "echo: hi"]  # type: ignore[index]
    assert alice.threads.get(tid)["status"] == "idle"
    assert alice.threads.search(status="idle", ids=[tid])[0]["thread_id"] == tid


def test_history_filter_search_sort_and_bad_node(alice: SyncLangGraphClient) -> None:
    older = alice.threads.create(metadata={"batch": "sort"})["thread_id"]
    newer = alice.threads.create(metadata={"batch": "sort"})["thread_id"]
    ascending = alice.threads.search(
        metadata={"batch": "sort"}, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in ascending] == [older, newer]
    descending = alice.threads.search(metadata={"batch": "sort"}, sort_by="created_at")
    assert [t["thread_id"] for t in descending] == [newer, older]
    alice.runs.wait(older, "assistant", input={"messages": [{"role": "user", "content": "h"}]})
    inputs = alice.threads.get_history(older, metadata={"source": "input"})
    assert inputs and all(s["metadata"]["source"] == "input" for s in inputs)
    everything = alice.threads.get_history(older, limit=50)
    assert len(inputs) < len(everything)
    with pytest.raises(httpx.HTTPStatusError) as bad:
        alice.threads.update_state(
            older, {"messages": [{"role": "user", "content": "x"}]}, as_node="nowhere"
        )
    assert bad.value.response.status_code == 422 and "as_node" in bad.value.response.text
