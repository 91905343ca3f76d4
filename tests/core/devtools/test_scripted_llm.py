"""The scripted server speaks the wire format the real client parses."""

from __future__ import annotations

import time

import openai
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall


@pytest.fixture(scope="module")
def llm() -> ScriptedLLM:
    server = ScriptedLLM(
        models=[
            {"id": "free-one", "pricing": {"prompt": "0"}},
            {"id": "paid-one", "pricing": {"prompt": "0.001"}},
        ]
    )
    server.start()
    yield server  # type: ignore[misc]
    server.stop()


def chat(llm: ScriptedLLM, **kw: object) -> ChatOpenAI:
    return ChatOpenAI(base_url=llm.base_url, api_key="k", model="scripted", max_retries=0, **kw)  # type: ignore[arg-type]


def test_plain_answer_and_echo(llm: ScriptedLLM) -> None:
    llm.enqueue("Hello there.")
    assert chat(llm).invoke("hi").content == "Hello there."
    assert chat(llm).invoke("ping").content == "echo: ping"
    assert llm.chat_requests()[-1]["messages"][-1]["content"] == "ping"


def test_tool_calls_plain_and_streamed(llm: ScriptedLLM) -> None:
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {"tz": "UTC"})]))
    answer = chat(llm).invoke("time?")
    assert answer.tool_calls[0]["name"] == "current_time"  # type: ignore[attr-defined]
    assert answer.tool_calls[0]["args"] == {"tz": "UTC"}  # type: ignore[attr-defined]

    llm.enqueue(Reply(content="It is noon now", tool_calls=[ToolCall("lookup", {"q": "x"})]))
    merged: AIMessageChunk | None = None
    pieces = []
    for piece in chat(llm, streaming=True).stream("time?"):
        pieces.append(piece.content)
        merged = piece if merged is None else merged + piece  # type: ignore[operator]
    assert "".join(str(p) for p in pieces) == "It is noon now"
    assert len([p for p in pieces if p]) == 4  # one chunk per word
    assert merged is not None and merged.tool_calls[0]["args"] == {"q": "x"}


def test_errors_and_slow_replies(llm: ScriptedLLM) -> None:
    llm.enqueue(Reply(status=503, error="overloaded"))
    with pytest.raises(openai.APIStatusError, match="overloaded"):
        chat(llm).invoke("x")
    llm.enqueue(Reply("late", delay=2.0))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(llm, timeout=0.3).invoke("x")
    assert time.monotonic() - started < 1.9  # the 0.3 s timeout fired, not the 2 s reply


def test_per_model_queues_models_and_embeddings(llm: ScriptedLLM) -> None:
    llm.enqueue("from paid", model="paid-one")
    llm.enqueue("from anyone")
    other = ChatOpenAI(base_url=llm.base_url, api_key="k", model="free-one", max_retries=0)  # type: ignore[arg-type]
    assert other.invoke("x").content == "from anyone"
    paid = ChatOpenAI(base_url=llm.base_url, api_key="k", model="paid-one", max_retries=0)  # type: ignore[arg-type]
    assert paid.invoke("x").content == "from paid"

    listed = openai.OpenAI(base_url=llm.base_url, api_key="k").models.list()
    assert [m.id for m in listed.data] == ["free-one", "paid-one"]

    emb = OpenAIEmbeddings(
        base_url=llm.base_url,
        api_key="k",
        model="e",
        dimensions=64,  # type: ignore[arg-type]
        check_embedding_ctx_length=False,
    )
    a, b = emb.embed_documents(["red apple", "red apple"])
    assert len(a) == 64 and a == b
