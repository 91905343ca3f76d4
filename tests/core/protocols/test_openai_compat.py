"""The OpenAI-compatible chat with the official ``openai`` client against a live server."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from tests.core.protocols.conftest import LiveServer


@pytest.fixture(scope="module")
def client(live: LiveServer, keys: dict[str, str]) -> OpenAI:
    return OpenAI(base_url=f"{live.url}/v1", api_key=keys["alice"], max_retries=0)


def messages_of(live: LiveServer, key: str, cid: str) -> list[str]:
    response = httpx.get(
        f"{live.url}/v1/conversations/{cid}/messages", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text
    return [m["content"] for m in response.json()["items"]]


def test_create_and_continue_a_conversation(
    client: OpenAI, live: LiveServer, keys: dict[str, str]
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "first"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "echo: first"
    assert completion.choices[0].finish_reason == "stop"
    cid = raw.headers["x-agentry-conversation"]
    assert (completion.model_extra or {})["conversation_id"] == cid
    # continue by header ...
    second = client.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "second"}],
        extra_headers={"X-Agentry-Conversation": cid},
    )
    assert second.choices[0].message.content == "echo: second"
    # ... or by metadata
    third = client.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "third"}],
        metadata={"conversation_id": cid},
    )
    assert (third.model_extra or {})["conversation_id"] == cid
    assert messages_of(live, keys["alice"], cid) == [
        "first",
        "echo: first",
        "second",
        "echo: second",
        "third",
        "echo: third",
    ]


def test_history_seeds_a_new_conversation(
    client: OpenAI, live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    completion = client.chat.completions.create(
        model="assistant",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "hello Ada"},
            {"role": "user", "content": "what is my name?"},
        ],
    )
    cid = (completion.model_extra or {})["conversation_id"]
    sent = llm.chat_requests()[-1]["messages"]
    assert [m["content"] for m in sent][-3:] == ["my name is Ada", "hello Ada", "what is my name?"]
    assert "be brief" in [m["content"] for m in sent]
    assert messages_of(live, keys["alice"], cid) == [
        "my name is Ada",
        "hello Ada",
        "what is my name?",
        "echo: what is my name?",
    ]


def test_streaming(client: OpenAI, llm: ScriptedLLM) -> None:
    llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("Streaming reply here."))
    stream = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "time?"}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "Streaming reply here."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1
    assert all((c.model_extra or {}).get("conversation_id") for c in chunks)


def test_models_list(live: LiveServer, keys: dict[str, str], client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "assistant" in ids
    prefixed = OpenAI(base_url=f"{live.url}/openai/v1", api_key=keys["alice"], max_retries=0)
    assert [m.id for m in prefixed.models.list()] == ids
    answer = prefixed.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "via prefix"}]
    )
    assert answer.choices[0].message.content == "echo: via prefix"
    # without an OpenAI SDK, /v1/models stays the model registry
    registry = httpx.get(
        f"{live.url}/v1/models", headers={"Authorization": f"Bearer {keys['alice']}"}
    ).json()
    assert isinstance(registry, list) and "reliability_score" in registry[0]


def test_errors(client: OpenAI, keys: dict[str, str], live: LiveServer) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as unsupported:
        client.chat.completions.create(
            model="assistant", messages=[{"role": "user", "content": "x"}], temperature=0.2
        )
    assert "temperature" in str(unsupported.value)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-agent", messages=[{"role": "user", "content": "x"}]
        )
    first = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "mine"}]
    )
    cid = (first.model_extra or {})["conversation_id"]
    bob = OpenAI(base_url=f"{live.url}/v1", api_key=keys["bob"], max_retries=0)
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "steal"}],
            extra_headers={"X-Agentry-Conversation": cid},
        )
    with pytest.raises(openai.UnprocessableEntityError) as client_tools:
        client.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert "tools" in str(client_tools.value)
    nobody = OpenAI(base_url=f"{live.url}/v1", api_key="agk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        nobody.models.list()


def test_stream_reports_a_failing_model(client: OpenAI, llm: ScriptedLLM) -> None:
    llm.enqueue(*[Reply(status=503) for _ in range(6)])
    stream = client.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "fail"}], stream=True
    )
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    llm.clear()
    assert "every usable model failed" in str(failed.value)
