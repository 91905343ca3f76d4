"""``agentry bench protocols``: what a turn costs through each protocol surface.

The same server (live uvicorn on a loopback port) and the same instant model
(the scripted server in a process of its own) answer the same messages through
Agentry's own ``POST /v1/conversations/{id}/messages`` (the baseline, measured in
the same run), the Agent Protocol with ``langgraph_sdk`` (``runs.wait`` and
``runs.stream`` in ``values`` + ``messages-tuple`` modes) and the OpenAI-compatible
chat with the official ``openai`` client (a conversation continued by header).
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from langgraph_sdk import get_sync_client
from openai import OpenAI

from config import Settings
from core.auth.users import create_user
from core.bench.metrics import percentile
from core.bench.model_server import model_server
from core.db.engine import Database

AGENT = "assistant"


@contextmanager
def live_server(db: Database, settings: Settings) -> Iterator[str]:
    """The API on a free loopback port in a thread of this process; yields its URL."""
    from core.api.app import create_app  # the CLI needs no web app unless benchmarking

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(db, settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _timed(
    surfaces: dict[str, Callable[[str], Any]], turns: int, tick: Callable[[], None]
) -> dict[str, list[float]]:
    """Interleaved (one turn of each surface per round), so warm-up and the machine's
    load hit every surface alike."""
    for turn in surfaces.values():
        turn("warm up")
    times: dict[str, list[float]] = {name: [] for name in surfaces}
    for i in range(turns):
        for name, turn in surfaces.items():
            started = time.perf_counter()
            turn(f"message number {i}")
            times[name].append((time.perf_counter() - started) * 1000)
            tick()
    return times


def _summary(times: list[float], baseline: list[float]) -> dict[str, Any]:
    p50, b50 = statistics.median(times), statistics.median(baseline)
    return {
        "p50_ms": round(p50, 2),
        "p95_ms": round(percentile(times, 95), 2),
        "ratio_p50_vs_native": round(p50 / b50, 2) if b50 else None,
    }


def run_protocols_bench(
    db: Database, settings: Settings, *, turns: int, tick: Callable[[], None] = lambda: None
) -> dict[str, Any]:
    """Every surface ``turns`` times on ``db`` (a database of the benchmark's own)."""
    with model_server() as model_url:
        local = settings.model_copy(
            update={"llm_base_url": model_url, "llm_model": "scripted", "llm_api_key": None}
        )
        with db.engine.begin() as conn:
            _, key = create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@bench.invalid")
        with live_server(db, local) as url, httpx.Client(base_url=url, timeout=30) as http:
            auth = {"Authorization": f"Bearer {key}"}
            cid = http.post("/v1/conversations", json={"agent": AGENT}, headers=auth).json()["id"]

            def native(text: str) -> Any:
                reply = http.post(
                    f"/v1/conversations/{cid}/messages", json={"content": text}, headers=auth
                )
                reply.raise_for_status()

            lg = get_sync_client(url=url, api_key=key)
            tid = lg.threads.create()["thread_id"]
            sid = lg.threads.create()["thread_id"]

            def user(text: str) -> dict[str, Any]:
                return {"messages": [{"role": "user", "content": text}]}

            def wait(text: str) -> Any:
                lg.runs.wait(tid, AGENT, input=user(text))

            def stream(text: str) -> Any:
                for _ in lg.runs.stream(
                    sid,
                    AGENT,
                    input=user(text),
                    stream_mode=["values", "messages-tuple"],
                ):
                    pass

            oa = OpenAI(base_url=f"{url}/openai/v1", api_key=key, max_retries=0)
            first = oa.chat.completions.create(
                model=AGENT, messages=[{"role": "user", "content": "start"}]
            )
            conversation = (first.model_extra or {})["conversation_id"]

            def openai_chat(text: str) -> Any:
                oa.chat.completions.create(
                    model=AGENT,
                    messages=[{"role": "user", "content": text}],
                    extra_headers={"X-Agentry-Conversation": conversation},
                )

            measured = _timed(
                {
                    "native_messages": native,
                    "agent_protocol_wait": wait,
                    "agent_protocol_stream": stream,
                    "openai_chat": openai_chat,
                },
                turns,
                tick,
            )
    baseline = measured["native_messages"]
    return {
        "benchmark": "protocols",
        "turns": turns,
        **{name: _summary(times, baseline) for name, times in measured.items()},
    }
