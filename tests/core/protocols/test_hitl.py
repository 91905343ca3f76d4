"""Human in the loop through the Agent Protocol, with the real ``langgraph_sdk`` clients
(sync and async) against a live server: tool approval in Agent Chat UI's schema,
``interrupt()`` in a tool, breakpoints, and ``command`` (resume, update, goto)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.core.hitl_project import hitl_project
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

ASK_TIME = {"messages": [{"role": "user", "content": "what time is it?"}]}


@pytest.fixture(scope="module")
def live(
    db: Database, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    project = hitl_project(tmp_path_factory.mktemp("hitl-project"))
    settings = runtime_settings(llm.base_url, AGENTRY_PROJECT_DIR=str(project))
    with LiveServer(create_app(db, settings)) as server:
        yield server


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


def stored(live: LiveServer, key: str, tid: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{live.url}/v1/conversations/{tid}/messages",
        headers={"Authorization": f"Bearer {key}"},
    )
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def pause_on_approval(alice: SyncLangGraphClient, llm: ScriptedLLM, *calls: ToolCall) -> str:
    """A thread of ``careful`` paused on the approval of ``calls``."""
    tid = alice.threads.create(graph_id="careful")["thread_id"]
    llm.enqueue(Reply(tool_calls=list(calls)), Reply("Done."))
    out = alice.runs.wait(tid, "careful", input=ASK_TIME)
    assert isinstance(out, dict) and len(out["__interrupt__"]) == len(calls), out
    return str(tid)


def test_approval_pauses_and_agent_chat_ui_accepts(
    alice: SyncLangGraphClient, llm: ScriptedLLM, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = alice.threads.create(graph_id="careful")["thread_id"]
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {"timezone": "UTC"})]), Reply("Noon."))
    parts = list(
        alice.runs.stream(tid, "careful", input=ASK_TIME, stream_mode=["values", "updates"])
    )
    updates = [p.data for p in parts if p.event == "updates"]
    assert "__interrupt__" in updates[-1], updates
    values = [p.data for p in parts if p.event == "values"]
    (pause,) = values[-1]["__interrupt__"]
    # the agent-inbox HumanInterrupt schema Agent Chat UI renders as approve/edit/reject
    (request,) = pause["value"]
    assert request["action_request"] == {"action": "current_time", "args": {"timezone": "UTC"}}
    assert request["config"] == {
        "allow_accept": True,
        "allow_edit": True,
        "allow_respond": True,
        "allow_ignore": True,
    }
    assert "careful wants to run current_time" in request["description"]

    thread = alice.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert [i["id"] for t in thread["interrupts"].values() for i in t] == [pause["id"]]
    state = alice.threads.get_state(tid)
    assert state["next"] == ["approve"]
    assert state["tasks"][0]["interrupts"][0]["id"] == pause["id"]
    assert state["interrupts"][0]["value"] == pause["value"]
    assert alice.runs.list(tid)[0]["status"] == "interrupted"
    assert [t["thread_id"] for t in alice.threads.search(status="interrupted")] == [tid]
    # not run, and a new message does not drop the decision
    assert [m["role"] for m in stored(live, keys["alice"], tid)] == ["user", "assistant"]
    with pytest.raises(httpx.HTTPStatusError) as busy:
        alice.runs.wait(tid, "careful", input={"messages": [{"role": "user", "content": "hey"}]})
    assert busy.value.response.status_code == 409
    assert "waiting for a decision" in busy.value.response.text

    # exactly what Agent Chat UI sends: input {} and the responses as a list
    resumed = list(
        alice.runs.stream(
            tid,
            "careful",
            input={},
            command={"resume": [{"type": "accept", "args": None}]},
            stream_mode="values",
        )
    )
    final = [p.data for p in resumed if p.event == "values"][-1]
    assert "__interrupt__" not in final
    assert [m["type"] for m in final["messages"]] == ["human", "ai", "tool", "ai"]
    assert final["messages"][2]["content"].endswith("+00:00")  # the clock ran
    assert alice.threads.get(tid)["status"] == "idle"
    rows = stored(live, keys["alice"], tid)
    assert [m["role"] for m in rows] == ["user", "assistant", "tool", "assistant"]
    assert len({m["id"] for m in rows}) == 4


def test_edit_and_refuse(
    alice: SyncLangGraphClient, llm: ScriptedLLM, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = pause_on_approval(alice, llm, ToolCall("current_time", {"timezone": "UTC"}))
    edited = alice.runs.wait(
        tid,
        "careful",
        command={
            "resume": [
                {
                    "type": "edit",
                    "args": {"action": "current_time", "args": {"timezone": "Asia/Tokyo"}},
                }
            ]
        },
    )
    tool = edited["messages"][2]  # type: ignore[index,call-overload]
    assert tool["content"].startswith("(run with arguments edited by the person")
    assert tool["content"].endswith("+09:00")

    tid = pause_on_approval(alice, llm, ToolCall("current_time", {}))
    refused = alice.runs.wait(
        tid, "careful", command={"resume": [{"type": "response", "args": "not now"}]}
    )
    answer = refused["messages"][2]["content"]  # type: ignore[index,call-overload]
    assert answer == "The person refused to run current_time. They said: not now"
    # the model was told
    last_prompt = llm.chat_requests()[-1]["messages"]
    assert any(m.get("content") == answer for m in last_prompt if m["role"] == "tool")

    tid = pause_on_approval(alice, llm, ToolCall("current_time", {}))
    with pytest.raises(httpx.HTTPStatusError) as bad:
        alice.runs.wait(tid, "careful", command={"resume": "sure"})
    assert bad.value.response.status_code == 422
    assert "resume[" in bad.value.response.json()["detail"]
    ignored = alice.runs.wait(tid, "careful", command={"resume": {"type": "ignore"}})
    assert ignored["messages"][2]["content"] == (  # type: ignore[index,call-overload]
        "The person refused to run current_time."
    )


def test_several_interrupts_resume_together_by_id(
    alice: SyncLangGraphClient, llm: ScriptedLLM, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = pause_on_approval(
        alice,
        llm,
        ToolCall("current_time", {"timezone": "UTC"}),
        ToolCall("current_time", {"timezone": "Asia/Tokyo"}),
    )
    state = alice.threads.get_state(tid)
    assert state["next"] == ["approve", "approve"]
    ids = {
        t["interrupts"][0]["value"][0]["action_request"]["args"]["timezone"]: t["interrupts"][0][
            "id"
        ]
        for t in state["tasks"]
    }
    assert len(alice.threads.get(tid)["interrupts"]) == 2
    with pytest.raises(httpx.HTTPStatusError) as ambiguous:
        alice.runs.wait(tid, "careful", command={"resume": {"type": "accept"}})
    assert ambiguous.value.response.status_code == 422
    assert "answer them by id" in ambiguous.value.response.text
    with pytest.raises(httpx.HTTPStatusError) as unknown:
        alice.runs.wait(tid, "careful", command={"resume": {"0" * 32: {"type": "accept"}}})
    assert unknown.value.response.status_code == 422
    out = alice.runs.wait(
        tid,
        "careful",
        command={
            "resume": {
                ids["UTC"]: {"type": "accept"},
                ids["Asia/Tokyo"]: [{"type": "ignore", "args": None}],
            }
        },
    )
    messages = out["messages"]  # type: ignore[index,call-overload]
    assert [m["type"] for m in messages] == ["human", "ai", "tool", "tool", "ai"]
    assert messages[2]["content"].endswith("+00:00")
    assert messages[3]["content"] == "The person refused to run current_time."
    rows = stored(live, keys["alice"], tid)
    assert len(rows) == 5 and len({m["id"] for m in rows}) == 5


def test_interrupt_inside_a_tool(alice: SyncLangGraphClient, llm: ScriptedLLM) -> None:
    tid = alice.threads.create(graph_id="careful")["thread_id"]
    llm.enqueue(
        Reply(tool_calls=[ToolCall("ask_person", {"question": "which colour?"})]), Reply("ok")
    )
    parts = list(alice.runs.stream(tid, "careful", input=ASK_TIME, stream_mode="updates"))
    (pause,) = parts[-1].data["__interrupt__"]
    assert pause["value"] == {"question": "which colour?"}
    assert alice.threads.get_state(tid)["next"] == ["tools"]
    out = alice.runs.wait(tid, "careful", command={"resume": "blue"})
    assert out["messages"][2]["content"] == "the person answered: blue"  # type: ignore[index,call-overload]
    with pytest.raises(httpx.HTTPStatusError) as nothing:
        alice.runs.wait(tid, "careful", command={"resume": "again"})
    assert nothing.value.response.status_code == 409


def test_breakpoints_before_and_after(alice: SyncLangGraphClient, llm: ScriptedLLM) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("Tea time."))
    out = alice.runs.wait(tid, "assistant", input=ASK_TIME, interrupt_before=["tools"])
    assert out["__interrupt__"] == []  # type: ignore[index,call-overload]
    thread = alice.threads.get(tid)
    assert thread["status"] == "interrupted" and thread["interrupts"] == {}
    assert alice.threads.get_state(tid)["next"] == ["tools"]
    # a breakpoint needs no answer: a run without input goes on
    done = alice.runs.wait(tid, "assistant", input=None)
    assert done["messages"][-1]["content"] == "Tea time."  # type: ignore[index,call-overload]
    assert alice.threads.get(tid)["status"] == "idle"

    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("Later."))
    alice.runs.wait(
        tid,
        "assistant",
        input={"messages": [{"role": "user", "content": "again"}]},
        interrupt_after=["agent.assistant"],
    )
    assert alice.threads.get_state(tid)["next"] == ["tools"]
    end = alice.runs.wait(tid, "assistant", command={"resume": True})
    assert end["messages"][-1]["content"] == "Later."  # type: ignore[index,call-overload]
    with pytest.raises(httpx.HTTPStatusError) as bad:
        alice.runs.wait(tid, "assistant", input=ASK_TIME, interrupt_before=["nowhere"])
    assert bad.value.response.status_code == 422
    assert "interrupt_before: no node 'nowhere'" in bad.value.response.json()["detail"]


def test_command_update_and_goto(
    alice: SyncLangGraphClient, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = alice.threads.create()["thread_id"]
    out = alice.runs.wait(
        tid,
        "assistant",
        command={
            "update": {"messages": [{"role": "user", "content": "added by a command"}]},
            "goto": "agent.assistant",
        },
    )
    contents = [m["content"] for m in out["messages"]]  # type: ignore[index,call-overload]
    assert contents == ["added by a command", "echo: added by a command"]
    assert [m["content"] for m in stored(live, keys["alice"], tid)] == contents
    for command, field in (
        ({"goto": "nowhere"}, "command.goto"),
        ({"update": {"agent": "mechanic"}}, "command.update.agent"),
        ({"jump": 1}, "command.jump"),
    ):
        with pytest.raises(httpx.HTTPStatusError) as bad:
            alice.runs.wait(tid, "assistant", command=command)  # type: ignore[arg-type]
        assert bad.value.response.status_code == 422
        assert bad.value.response.json()["detail"].startswith(field)
    with pytest.raises(httpx.HTTPStatusError) as both:
        alice.runs.wait(tid, "assistant", input=ASK_TIME, command={"resume": "x"})
    assert both.value.response.status_code == 422


def test_async_client_approves(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM, tmp_path: Path
) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        tid = (await client.threads.create(graph_id="careful"))["thread_id"]
        llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("Async done."))
        run = await client.runs.create(tid, "careful", input=ASK_TIME)
        await client.runs.join(tid, run["run_id"])
        assert (await client.runs.get(tid, run["run_id"]))["status"] == "interrupted"
        thread = await client.threads.get(tid)
        assert thread["status"] == "interrupted"
        (pending,) = next(iter(thread["interrupts"].values()))
        parts = [
            p
            async for p in client.runs.stream(
                tid,
                "careful",
                command={"resume": {pending["id"]: {"type": "accept"}}},
                stream_mode="updates",
            )
        ]
        nodes = [next(iter(p.data)) for p in parts if p.event == "updates"]
        assert nodes == ["approve", "tools", "agent.careful"], nodes
        state = await client.threads.get_state(tid)
        assert state["values"]["messages"][-1]["content"] == "Async done."
        assert state["tasks"] == [] and (await client.threads.get(tid))["status"] == "idle"

    asyncio.run(scenario())
