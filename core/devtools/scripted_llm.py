"""A local OpenAI-compatible HTTP server with scripted replies.

No LLM is reachable from build machines, so tests and benchmarks talk to this
server over real HTTP through the same ``langchain-openai`` client production
uses. It speaks ``/v1/chat/completions`` (plain and streaming, with tool calls),
``/v1/models`` and ``/v1/embeddings``.

Example:
    with ScriptedLLM() as llm:
        llm.enqueue(Reply(tool_calls=[ToolCall("current_time", {})]), Reply("It is noon."))
        ChatOpenAI(base_url=llm.base_url, api_key="test", model="scripted").invoke("time?")
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass
class Reply:
    """One scripted answer.

    Args:
        content: assistant text (streamed word by word when the client streams).
        tool_calls: tool calls to request instead of / besides the text.
        delay: seconds to wait before answering (slow-model tests).
        status: HTTP status; >= 400 answers an OpenAI-style error body.
        error: the error message for such a status.
        stall_after: when streaming, stop sending (but keep the connection) after
            this many chunks, to simulate a model hanging mid-answer.
    """

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    delay: float = 0.0
    status: int = 200
    error: str = "scripted failure"
    stall_after: int | None = None


Responder = Callable[[dict[str, Any]], Reply]


def echo_responder(request: dict[str, Any]) -> Reply:
    """Default: answer with the last user message, instantly."""
    for message in reversed(request.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return Reply(content=f"echo: {content}")
    return Reply(content="echo")


def fake_embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector derived from the text's words (for wiring tests)."""
    vector = [0.0] * dims
    for word in text.lower().split():
        digest = hashlib.sha256(word.encode()).digest()
        for i in range(0, 8, 2):
            slot = int.from_bytes(digest[i : i + 2], "big") % dims
            vector[slot] += 1.0 if digest[i + 8] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class ScriptedLLM:
    """The server, run in a background thread on a free loopback port."""

    def __init__(
        self,
        models: list[dict[str, Any]] | None = None,
        responder: Responder = echo_responder,
        api_key: str | None = None,
    ) -> None:
        self.models = models or [{"id": "scripted", "pricing": {"prompt": "0", "completion": "0"}}]
        self.responder = responder
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._queues: dict[str | None, deque[Reply]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- scripting -----------------------------------------------------------
    def enqueue(self, *replies: Reply | str, model: str | None = None) -> None:
        """Queue replies, answered in order (for ``model`` only, when given)."""
        with self._lock:
            queue = self._queues.setdefault(model, deque())
            queue.extend(r if isinstance(r, Reply) else Reply(content=r) for r in replies)

    def clear(self) -> None:
        """Drop the replies not used yet (e.g. failures a retry did not consume)."""
        with self._lock:
            self._queues.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._queues.values())

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("_path") == "/v1/chat/completions"]

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            for key in (body.get("model"), None):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return self.responder(body)

    # --- lifecycle -----------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedLLM:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("scripted LLM server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the HTTP surface ----------------------------------------------------
    def _app(self) -> FastAPI:
        app = FastAPI()

        def unauthorized(request: Request) -> Response | None:
            if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return _error(401, "invalid api key")
            return None

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            self.requests.append({"_path": "/v1/models"})
            return unauthorized(request) or JSONResponse(
                {"object": "list", "data": [{"object": "model", **m} for m in self.models]}
            )

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            self.requests.append({"_path": "/v1/embeddings", **body})
            if denied := unauthorized(request):
                return denied
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            dims = int(body.get("dimensions") or 1536)
            data = [
                {"object": "embedding", "index": i, "embedding": fake_embedding(str(t), dims)}
                for i, t in enumerate(inputs)
            ]
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model"),
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }
            )

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            # The Authorization header too: tests check which key a call was made with.
            self.requests.append(
                {
                    "_path": "/v1/chat/completions",
                    "_authorization": request.headers.get("authorization"),
                    **body,
                }
            )
            if denied := unauthorized(request):
                return denied
            reply = self._next_reply(body)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status >= 400:
                return _error(reply.status, reply.error)
            completion_id = f"chatcmpl-{next(self._ids)}"
            if body.get("stream"):
                return StreamingResponse(
                    self._stream(reply, body, completion_id), media_type="text/event-stream"
                )
            return JSONResponse(self._completion(reply, body, completion_id))

        return app

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [
            {
                "id": call.id or f"call_{next(self._ids)}",
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in reply.tool_calls
        ]

    def _completion(self, reply: Reply, body: dict[str, Any], cid: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {
            "id": cid,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": _usage(body, reply),
        }

    async def _stream(self, reply: Reply, body: dict[str, Any], cid: str) -> AsyncIterator[str]:
        base = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            payload = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return f"data: {json.dumps(payload)}\n\n"

        chunks = [chunk({"role": "assistant", "content": ""})]
        if reply.content:
            words = reply.content.split(" ")
            chunks += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        for index, call in enumerate(self._tool_calls(reply)):
            fn = call["function"]
            chunks.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": fn["name"], "arguments": ""},
                            }
                        ]
                    }
                )
            )
            chunks.append(
                chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": fn["arguments"]}}]}
                )
            )
        chunks.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**base, "choices": [], "usage": _usage(body, reply)}
            chunks.append(f"data: {json.dumps(usage)}\n\n")
        for sent, text in enumerate(chunks):
            if reply.stall_after is not None and sent >= reply.stall_after:
                await asyncio.sleep(3600)
            yield text
        yield "data: [DONE]\n\n"


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    completion = len((reply.content or "").split()) + 8 * len(reply.tool_calls)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _error(status: int, message: str) -> JSONResponse:
    kind = "rate_limit_error" if status == 429 else "server_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": status}}, status_code=status
    )
