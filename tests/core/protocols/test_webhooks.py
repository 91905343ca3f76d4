"""Webhooks of runs and crons, received by a real HTTP server on 127.0.0.1: signature,
retries with backoff, allowed hosts, and runs that never wait for the receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from sqlalchemy import text

from config import load_settings
from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.runs.webhooks import host_allowed
from core.runtime.retention import prune_checkpoints
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

SECRET = "s3cret-for-tests"
PING = {"messages": [{"role": "user", "content": "ping"}]}


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers by path: ``/ok`` 200, ``/flaky`` 500 twice then 200, ``/down`` always 500,
    ``/slow`` 200 after 6 s."""

    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def of(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            hit = Hit(self.path, dict(self.headers), raw, time.monotonic())
            with state.lock:
                state.hits.append(hit)
                seen = len([h for h in state.hits if h.path == self.path])
            if self.path == "/slow":
                time.sleep(6)
            failing = self.path == "/down" or (self.path == "/flaky" and seen <= 2)
            self.send_response(500 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    settings = runtime_settings(
        llm.base_url,
        AGENTRY_CRON_INTERVAL=0.05,
        AGENTRY_WEBHOOK_INTERVAL=0.05,
        AGENTRY_WEBHOOK_ALLOWED_HOSTS="127.0.0.1, *.example.org",
        AGENTRY_WEBHOOK_SECRET=SECRET,
        AGENTRY_WEBHOOK_BACKOFF=0.3,
        AGENTRY_WEBHOOK_MAX_ATTEMPTS=3,
    )
    with LiveServer(create_app(db, settings)) as server:
        yield server


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _delivery(db: Database, run_id: str) -> Any:
    with db.engine.connect() as conn:
        return conn.execute(
            text("SELECT status, attempts, last_error FROM webhook_deliveries WHERE run_id = :r"),
            {"r": run_id},
        ).one()


def test_allowed_hosts() -> None:
    allowed = frozenset({"127.0.0.1", "*.example.org"})
    assert host_allowed("127.0.0.1", allowed) and host_allowed("hooks.example.org", allowed)
    assert not host_allowed("example.org.evil.com", allowed)
    assert not host_allowed("evilexample.org", allowed)
    assert not host_allowed("localhost", frozenset())
    settings = load_settings(AGENTRY_WEBHOOK_ALLOWED_HOSTS=" Hooks.Example.org, ,10.0.0.1 ")
    assert settings.webhook_hosts == {"hooks.example.org", "10.0.0.1"}
    assert load_settings().webhook_hosts == frozenset()


def test_run_webhook_is_signed(
    alice: SyncLangGraphClient, receiver: Receiver, db: Database
) -> None:
    tid = alice.threads.create()["thread_id"]
    run = alice.runs.create(tid, "assistant", input=PING, webhook=f"{receiver.url}/ok")
    _until(lambda: any(h.json()["run_id"] == run["run_id"] for h in receiver.of("/ok")))
    hit = next(h for h in receiver.of("/ok") if h.json()["run_id"] == run["run_id"])
    expected = "sha256=" + hmac.new(SECRET.encode(), hit.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hit.headers["X-Agentry-Signature"], expected)
    assert hit.headers["Content-Type"] == "application/json"
    body = hit.json()
    assert body["thread_id"] == tid and body["status"] == "success"
    assert [m["content"] for m in body["values"]["messages"]] == ["ping", "echo: ping"]
    assert body["error"] is None
    _until(lambda: _delivery(db, run["run_id"]).status == "delivered")
    assert _delivery(db, run["run_id"]).attempts == 1


def test_a_failed_run_posts_its_error(
    alice: SyncLangGraphClient, receiver: Receiver, llm: ScriptedLLM
) -> None:
    tid = alice.threads.create()["thread_id"]
    llm.enqueue(*[Reply(status=503) for _ in range(6)])
    try:
        run = alice.runs.create(tid, "assistant", input=PING, webhook=f"{receiver.url}/ok")
        _until(lambda: any(h.json()["run_id"] == run["run_id"] for h in receiver.of("/ok")))
    finally:
        llm.clear()
    body = next(h.json() for h in receiver.of("/ok") if h.json()["run_id"] == run["run_id"])
    assert body["status"] == "error" and body["error"]["message"]


def test_failures_are_retried_with_backoff_then_given_up(
    alice: SyncLangGraphClient, receiver: Receiver, db: Database
) -> None:
    tid = alice.threads.create()["thread_id"]
    flaky = alice.runs.wait(tid, "assistant", input=PING, webhook=f"{receiver.url}/flaky")
    assert flaky["messages"][-1]["content"] == "echo: ping"
    _until(lambda: len(receiver.of("/flaky")) == 3)
    hits = receiver.of("/flaky")
    assert len({h.headers["X-Agentry-Delivery"] for h in hits}) == 1  # one delivery, retried
    assert len({h.body for h in hits}) == 1
    first_gap, second_gap = hits[1].at - hits[0].at, hits[2].at - hits[1].at
    assert first_gap >= 0.3 and second_gap >= 0.6, (first_gap, second_gap)
    run_id = hits[0].json()["run_id"]
    _until(lambda: _delivery(db, run_id).status == "delivered")

    tid = alice.threads.create()["thread_id"]
    alice.runs.wait(tid, "assistant", input=PING, webhook=f"{receiver.url}/down")
    _until(lambda: len(receiver.of("/down")) == 3)
    run_id = receiver.of("/down")[0].json()["run_id"]
    _until(lambda: _delivery(db, run_id).status == "failed")
    failed = _delivery(db, run_id)
    assert failed.attempts == 3 and "500" in failed.last_error
    time.sleep(1.5)  # past the next backoff: given up means no more POSTs
    assert len(receiver.of("/down")) == 3


def test_hosts_not_allowed_are_422_naming_webhook(
    alice: SyncLangGraphClient, live: LiveServer, keys: dict[str, str]
) -> None:
    tid = alice.threads.create()["thread_id"]
    for url in (
        "http://evil.example.com/hook",
        "ftp://127.0.0.1/x",
        "http://localhost:1/",
        "http://[::1/hook",
        "not a url",
    ):
        with pytest.raises(httpx.HTTPStatusError) as refused:
            alice.runs.create(tid, "assistant", input=PING, webhook=url)
        assert refused.value.response.status_code == 422
        assert refused.value.response.json()["detail"].startswith("webhook:")
        with pytest.raises(httpx.HTTPStatusError) as cron:
            alice.crons.create("assistant", schedule="* * * * *", input=PING, webhook=url)
        assert cron.value.response.status_code == 422
        assert cron.value.response.json()["detail"].startswith("webhook:")

    async def stateless() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await client.runs.wait(None, "assistant", input=PING, webhook="http://evil.test/")
        assert refused.value.response.status_code == 422
        assert "webhook" in refused.value.response.text

    asyncio.run(stateless())


def test_prune_removes_finished_deliveries_past_the_days(db: Database) -> None:
    insert = text(
        "INSERT INTO webhook_deliveries (run_id, url, body, status, created_at)"
        " VALUES (gen_random_uuid(), 'http://127.0.0.1/x', '{}', :status,"
        " now() - make_interval(days => :age)) RETURNING id"
    )
    with db.engine.begin() as conn:
        old_done = conn.execute(insert, {"status": "delivered", "age": 40}).scalar_one()
        old_failed = conn.execute(insert, {"status": "failed", "age": 40}).scalar_one()
        old_pending = conn.execute(insert, {"status": "pending", "age": 40}).scalar_one()
        recent = conn.execute(insert, {"status": "delivered", "age": 1}).scalar_one()
        report = prune_checkpoints(conn, keep=20, deleted_after_days=30)
        left = set(
            conn.execute(
                text("SELECT id FROM webhook_deliveries WHERE id = ANY(:ids)"),
                {"ids": [old_done, old_failed, old_pending, recent]},
            ).scalars()
        )
    assert report.webhook_deliveries == 2
    assert left == {old_pending, recent}


def test_a_stateless_crons_runs_post_their_webhook(
    alice: SyncLangGraphClient, receiver: Receiver, db: Database
) -> None:
    cron = alice.crons.create(
        "assistant", schedule="* * * * *", input=PING, webhook=f"{receiver.url}/ok"
    )
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE crons SET next_run_at = now() WHERE id = :id"), {"id": cron["cron_id"]}
        )
    _until(
        lambda: any(
            h.json()["metadata"].get("cron_id") == cron["cron_id"] for h in receiver.of("/ok")
        )
    )
    hit = next(h for h in receiver.of("/ok") if h.json()["metadata"].get("cron_id"))
    body = hit.json()
    assert body["status"] == "success"
    assert body["values"]["messages"][-1]["content"] == "echo: ping"
    # on_run_completed "delete" (the default): the run's thread is gone afterwards.
    _until(lambda: _gone(alice, body["thread_id"]))
    alice.crons.delete(cron["cron_id"])


def _gone(client: SyncLangGraphClient, thread_id: str) -> bool:
    try:
        client.threads.get(thread_id)
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code == 404
    return False


def test_a_slow_receiver_does_not_delay_the_run(
    alice: SyncLangGraphClient, receiver: Receiver
) -> None:
    tid = alice.threads.create()["thread_id"]
    started = time.monotonic()
    out = alice.runs.wait(tid, "assistant", input=PING, webhook=f"{receiver.url}/slow")
    assert out["messages"][-1]["content"] == "echo: ping"
    again = alice.runs.wait(tid, "assistant", input=PING, webhook=f"{receiver.url}/slow")
    assert again["messages"][-1]["content"] == "echo: ping"
    assert time.monotonic() - started < 5  # the receiver takes 6 s per POST
    _until(lambda: len(receiver.of("/slow")) >= 1)
    # Other deliveries go on while the slow receiver holds a sender thread.
    run = alice.runs.wait(tid, "assistant", input=PING, webhook=f"{receiver.url}/ok")
    posted = time.monotonic()
    _until(lambda: len(receiver.of("/ok")) > 0 and _ok_count(receiver, tid) == 1, timeout=5)
    assert time.monotonic() - posted < 2.0
    assert run["messages"][-1]["content"] == "echo: ping"


def _ok_count(receiver: Receiver, thread_id: str) -> int:
    return sum(1 for h in receiver.of("/ok") if h.json()["thread_id"] == thread_id)
