"""Assistants as versioned agents, with the real async ``langgraph_sdk`` client."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from core.devtools.scripted_llm import ScriptedLLM
from tests.core.protocols.conftest import LiveServer

HELLO = {"messages": [{"role": "user", "content": "hello"}]}


async def prompt_of_run(client: LangGraphClient, llm: ScriptedLLM, assistant_id: str) -> str:
    """The system prompt the model received for one run of ``assistant_id``."""
    before = len(llm.chat_requests())
    thread = await client.threads.create(graph_id=assistant_id)
    assert thread["metadata"]["graph_id"] == "assistant"  # the assistant's graph
    out = await client.runs.wait(thread["thread_id"], assistant_id, input=HELLO)
    assert isinstance(out, dict) and out["messages"][-1]["content"] == "echo: hello"
    sent = llm.chat_requests()[before:]
    assert len(sent) == 1 and sent[0]["messages"][0]["role"] == "system"
    return str(sent[0]["messages"][0]["content"])


def test_async_assistant_lifecycle(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    async def scenario() -> None:
        admin = get_client(url=live.url, api_key=keys["admin"])
        alice = get_client(url=live.url, api_key=keys["alice"])
        aid = str(uuid.uuid4())
        made = await admin.assistants.create(
            "assistant",
            config={"configurable": {"system_prompt": "Async one."}},
            metadata={"kind": "async"},
            assistant_id=aid,
            if_exists="do_nothing",
        )
        assert made["version"] == 1 and made["context"] == {"system_prompt": "Async one."}
        again = await admin.assistants.create("assistant", assistant_id=aid, if_exists="do_nothing")
        assert again["assistant_id"] == aid and again["version"] == 1
        with pytest.raises(httpx.HTTPStatusError) as taken:
            await admin.assistants.create("assistant", assistant_id=aid, if_exists="raise")
        assert taken.value.response.status_code == 409
        assert await prompt_of_run(alice, llm, aid) == "Async one."

        updated = await admin.assistants.update(aid, context={"system_prompt": "Async two."})
        assert updated["version"] == 2 and updated["metadata"] == {"kind": "async"}
        assert await prompt_of_run(alice, llm, aid) == "Async two."
        versions = await alice.assistants.get_versions(aid)
        assert [v["version"] for v in versions] == [2, 1]
        assert (await admin.assistants.set_latest(aid, 1))["version"] == 1
        assert (await alice.assistants.get(aid))["version"] == 1
        assert await prompt_of_run(alice, llm, aid) == "Async one."

        found = await alice.assistants.search(metadata={"kind": "async"}, graph_id="assistant")
        assert [a["assistant_id"] for a in found] == [aid]
        assert await alice.assistants.count(metadata={"kind": "async"}) == 1
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await alice.assistants.update(aid, metadata={"kind": "mine"})
        assert refused.value.response.status_code == 403

        await admin.assistants.delete(aid)
        assert await alice.assistants.count(metadata={"kind": "async"}) == 0
        with pytest.raises(httpx.HTTPStatusError) as gone:
            await alice.assistants.get(aid)
        assert gone.value.response.status_code == 404

    asyncio.run(scenario())
