"""``agentry up`` as a user runs it: a real process on the embedded database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text

from config import load_settings
from core.db import open_database

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_running_on(pgdata: Path) -> bool:
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in " ".join(proc.info["cmdline"] or []):
            return True
    return False


def run_up(home: Path, port: int) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTRY_", "DB_"))}
    env.pop("DATABASE_URL", None)
    env["AGENTRY_HOME"] = str(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "up", "--port", str(port)],
        env=env,
        cwd=home.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert health is not None, "server never answered"
        assert health.status_code == 200, health.text
        assert health.json()["pgvector"]["ok"] is True
        for _ in range(3):  # probes must not fill the log
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    return proc.returncode, output


def test_up_serves_stops_cleanly_and_reuses_its_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    pgdata = home / "pgdata"

    code, output = run_up(home, free_port())
    assert code == 0, output
    assert "seeded 6 models and 2 agents" in output
    # Said at start, with the variables to set, not first met as a 503 in a chat.
    assert "warning: no usable model is configured: set AGENTRY_LLM_BASE_URL" in output
    assert "alembic" not in output, output  # no migration chatter per /health
    assert "Batches" not in output and "it/s]" not in output  # no progress bars
    assert (pgdata / "PG_VERSION").exists()
    time.sleep(0.5)
    assert not postgres_running_on(pgdata), "the embedded server outlived agentry up"

    code, output = run_up(home, free_port())
    assert code == 0, output
    assert "seeded" not in output  # same data: registries already there
    assert not postgres_running_on(pgdata)

    settings = load_settings(AGENTRY_HOME=str(home))
    database = open_database(settings)
    try:
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ai_models")).scalar_one() == 6
    finally:
        database.dispose()
        assert database.server is not None
        database.server.cleanup()
