"""Two ``agentry up`` processes on one database: any process joins and cancels any run,
and a run whose process is killed (-9) is completed by the other, from its checkpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from sqlalchemy import text

from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from tests.conftest import create_test_user, fresh_database
from tests.core.runtime.helpers import ROOT

LEASE = 2.0


def said(content: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": content}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``python -m core.cli up`` in a child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "core.cli", "up", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"{self.url}/info", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def shared(pg_server: Any, template_db: str, test_settings: Any) -> Iterator[Database]:
    database = fresh_database(pg_server, test_settings, "runs_processes")
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def servers(
    shared: Database, llm: ScriptedLLM, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    logs = tmp_path_factory.mktemp("servers")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": shared.url.render_as_string(hide_password=False),
        "AGENTRY_PROJECT_DIR": str(ROOT),
        "AGENTRY_LLM_BASE_URL": llm.base_url,
        "AGENTRY_LLM_MODEL": "scripted",
        "AGENTRY_RUN_LEASE_SECONDS": str(LEASE),
        "AGENTRY_EMBED_INTERVAL": "0",  # no embedding model in these processes
    }
    a = Server(env, logs / "a.log")
    try:
        a.wait_ready()  # one at a time: the first seeds the registries
        b = Server(env, logs / "b.log")
        try:
            b.wait_ready()
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def holder_pid(db: Database, run_id: str) -> int | None:
    with db.engine.connect() as conn:
        worker = conn.execute(
            text("SELECT worker FROM runs WHERE id = :id AND status = 'running'"), {"id": run_id}
        ).scalar()
    return int(worker.split(":")[1]) if worker else None


@pytest.mark.slow
def test_join_cancel_anywhere_and_take_over_after_kill(
    servers: tuple[Server, Server], shared: Database, llm: ScriptedLLM
) -> None:
    a, b = servers
    _, key = create_test_user(shared, "procs@example.org")
    on_a = get_sync_client(url=a.url, api_key=key)
    on_b = get_sync_client(url=b.url, api_key=key)

    # created on A, joined on B
    tid = on_a.threads.create()["thread_id"]
    run = on_a.runs.create(tid, "assistant", input=said("hello"))
    out = on_b.runs.join(tid, run["run_id"])
    assert out["messages"][-1]["content"] == "echo: hello"  # type: ignore[index]

    # created on A, cancelled on B (wherever a worker holds it)
    before = len(llm.chat_requests())
    llm.enqueue(Reply("never", delay=3.0))
    slow = on_a.runs.create(tid, "assistant", input=said("wait"))
    while len(llm.chat_requests()) == before:
        time.sleep(0.02)
    assert on_b.runs.cancel(tid, slow["run_id"], wait=True)["status"] == "interrupted"
    assert on_a.runs.get(tid, slow["run_id"])["status"] == "interrupted"

    # killed mid-run: the other process takes over once the lease expires
    tid = on_a.threads.create()["thread_id"]
    before = len(llm.chat_requests())
    llm.enqueue(Reply("lost with its process", delay=5.0))
    doomed = on_a.runs.create(tid, "assistant", input=said("third"))
    while len(llm.chat_requests()) == before:
        time.sleep(0.02)
    pid = holder_pid(shared, doomed["run_id"])
    assert pid in (a.proc.pid, b.proc.pid)
    victim, survivor = (a, b) if pid == a.proc.pid else (b, a)
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    victim.proc.wait()
    client = get_sync_client(url=survivor.url, api_key=key)
    out = client.runs.join(tid, doomed["run_id"])
    took = time.monotonic() - killed_at
    assert [m["content"] for m in out["messages"]] == ["third", "echo: third"]  # type: ignore[index]
    assert client.runs.get(tid, doomed["run_id"])["status"] == "success"
    assert took < LEASE + 4, took
    # no lost, no duplicated message: the log holds the user's message once
    listed = httpx.get(
        f"{survivor.url}/v1/conversations/{tid}/messages",
        headers={"Authorization": f"Bearer {key}"},
    ).json()["items"]
    assert [m["content"] for m in listed] == ["third", "echo: third"]
    with shared.engine.connect() as conn:
        attempt = conn.execute(
            text("SELECT attempt FROM runs WHERE id = :id"), {"id": doomed["run_id"]}
        ).scalar_one()
    assert attempt == 2
    events = list(client.runs.join_stream(tid, doomed["run_id"]))
    assert [e.data["attempt"] for e in events if e.event == "metadata"] == [1, 2]
