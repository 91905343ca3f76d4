"""A live Agentry server (uvicorn on a loopback port) on a ScriptedLLM, per module."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.conftest import create_test_user
from tests.core.runtime.helpers import runtime_settings


class LiveServer:
    def __init__(self, application: Any) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(application, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as server:
        yield server


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    _, alice = create_test_user(db, "alice@example.org")
    _, bob = create_test_user(db, "bob@example.org")
    _, admin = create_test_user(db, "root@example.org", admin=True)
    return {"alice": alice, "bob": bob, "admin": admin}
