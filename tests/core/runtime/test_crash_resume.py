"""Crash safety with a real process kill: SIGKILL the server in the middle of a turn
(after the tool call, while the model writes the final answer), start it again, and
the conversation resumes from its checkpoint with no lost and no duplicated messages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.registry.specs import AgentSpec
from core.registry.store import upsert_agent
from tests.conftest import auth, create_test_user
from tests.core.runtime.helpers import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``agentry up`` in a subprocess on the test database."""

    def __init__(self, db: Database, llm: ScriptedLLM, home: Path) -> None:
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("AGENTRY_", "DB_", "DATABASE_"))
            },
            "DATABASE_URL": db.url.render_as_string(hide_password=False),
            "AGENTRY_HOME": str(home),
            "AGENTRY_PROJECT_DIR": str(ROOT),
            "AGENTRY_LLM_BASE_URL": llm.base_url,
            "AGENTRY_LLM_MODEL": "scripted",
            "DB_MAX_CONNECTIONS": "4",
            "PYTHONPATH": str(ROOT),
        }
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = (self.home / f"server-{port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "up", "--port", str(port), "--log-level", "warning"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.home / f"server-{port}.log").read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[tuple[Server, ScriptedLLM]]:
    with ScriptedLLM() as llm:
        srv = Server(db, llm, tmp_path)
        try:
            yield srv, llm
        finally:
            srv.stop()


def stored(db: Database, conversation_id: str) -> list[tuple[str, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT role, content FROM messages WHERE conversation_id = :c ORDER BY seq"),
            {"c": conversation_id},
        )
        return [(r[0], r[1]) for r in rows]


def test_sigkill_mid_turn_then_resume(server: tuple[Server, ScriptedLLM], db: Database) -> None:
    srv, llm = server
    _, key = create_test_user(db, "crash@example.org")
    srv.start()
    conv = httpx.post(f"{srv.url}/v1/conversations", json={}, headers=auth(key)).json()
    cid = conv["id"]

    # The tool call is answered; the final answer never comes (the model is slow and the
    # process dies while waiting for it).
    llm.enqueue(
        Reply(tool_calls=[ToolCall("current_time", {"timezone": "UTC"})]), Reply("lost", delay=120)
    )
    outcome: dict[str, Any] = {}

    def send() -> None:
        try:
            outcome["response"] = httpx.post(
                f"{srv.url}/v1/conversations/{cid}/messages",
                json={"content": "what time is it?"},
                headers=auth(key),
                timeout=60,
            )
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 30
    while len(llm.chat_requests()) < 2:  # the second model call = after the tool ran
        assert time.monotonic() < deadline, "the turn never reached its second model call"
        time.sleep(0.05)
    time.sleep(0.3)
    srv.kill()
    sender.join(timeout=10)
    assert "error" in outcome  # the client saw the connection die, no answer

    before = stored(db, cid)
    assert [r for r, _ in before] == ["user", "assistant", "tool"]
    assert before[0][1] == "what time is it?"

    llm.enqueue(Reply("It is noon UTC."))
    srv.start()
    state = httpx.get(f"{srv.url}/v1/conversations/{cid}", headers=auth(key)).json()
    assert state["pending_turn"] is True
    resumed = httpx.post(f"{srv.url}/v1/conversations/{cid}/resume", headers=auth(key), timeout=30)
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert body["resumed"] is True
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("assistant", "It is noon UTC.")
    ]

    after = stored(db, cid)
    assert [r for r, _ in after] == ["user", "assistant", "tool", "assistant"]
    assert after[:3] == before and after[3][1] == "It is noon UTC."
    # resumed from the checkpoint: the tool did not run again, the model saw its result
    third = llm.chat_requests()[2]
    assert [m["role"] for m in third["messages"]] == ["system", "user", "assistant", "tool"]
    got = httpx.get(f"{srv.url}/v1/conversations/{cid}", headers=auth(key)).json()
    assert got["pending_turn"] is False and got["messages_count"] == 4

    # the conversation goes on normally
    nxt = httpx.post(
        f"{srv.url}/v1/conversations/{cid}/messages",
        json={"content": "thanks"},
        headers=auth(key),
        timeout=30,
    ).json()
    assert nxt["resumed"] is False
    assert [m["role"] for m in nxt["messages"]] == ["user", "assistant"]
    assert len(stored(db, cid)) == 6

    # A registry change made by another process (this one) is used by the server's next
    # turn, without a restart.
    with db.engine.begin() as conn:
        upsert_agent(
            conn,
            AgentSpec(
                name="assistant", system_prompt="Prompt from elsewhere.", tools=("current_time",)
            ),
            actor="test",
        )
    httpx.post(
        f"{srv.url}/v1/conversations/{cid}/messages",
        json={"content": "and now?"},
        headers=auth(key),
        timeout=30,
    )
    last = llm.chat_requests()[-1]
    assert last["messages"][0]["content"] == "Prompt from elsewhere."
    assert [t["function"]["name"] for t in last["tools"]] == ["current_time"]
