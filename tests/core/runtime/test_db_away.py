"""The database away under a running server (live uvicorn, real PostgreSQL): routes
answer 503 naming the database, the first turn after it comes back works (pooled
connections are checked), and a turn cut off by terminated connections leaves no
user message that nothing will answer."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from core.api.app import create_app
from core.conversations.messages import NewMessage, store_messages
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from tests.conftest import auth, create_test_user
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

TERMINATE_SQL = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = %s AND pid <> pg_backend_pid()"
)


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    with LiveServer(create_app(db, runtime_settings(llm.base_url))) as server:
        yield server


@pytest.fixture(scope="module")
def alice(db: Database) -> tuple[uuid.UUID, dict[str, str]]:
    user, key = create_test_user(db, "alice@example.org")
    return user.id, auth(key)


@pytest.fixture(scope="module")
def http(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        yield client


class Operator:
    """What an operator does from outside: terminate sessions, refuse connections."""

    def __init__(self, db: Database) -> None:
        self.name = str(db.url.database)
        admin = db.url.set(drivername="postgresql", database="postgres")
        self.conninfo = admin.render_as_string(hide_password=False)

    def run(self, sql: str, *args: Any) -> Any:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cursor = conn.execute(sql, args)
            return cursor.fetchone() if cursor.description else None

    def terminate(self) -> int:
        return int(self.run(TERMINATE_SQL, self.name)[0])

    def allow(self, allowed: bool) -> None:
        flag = "true" if allowed else "false"
        self.run(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {flag}')


def new_conversation(http: httpx.Client, headers: dict[str, str]) -> str:
    response = http.post("/v1/conversations", json={}, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def say(http: httpx.Client, headers: dict[str, str], cid: str, text: str) -> httpx.Response:
    return http.post(f"/v1/conversations/{cid}/messages", json={"content": text}, headers=headers)


def roles(http: httpx.Client, headers: dict[str, str], cid: str) -> list[tuple[str, str]]:
    response = http.get(f"/v1/conversations/{cid}/messages", headers=headers)
    assert response.status_code == 200, response.text
    return [(m["role"], m["content"]) for m in response.json()["items"]]


def test_database_away_is_503_and_the_first_turn_after_works(
    db: Database, http: httpx.Client, alice: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = alice
    cid = new_conversation(http, headers)
    assert say(http, headers, cid, "before").status_code == 200
    operator = Operator(db)
    operator.allow(False)
    try:
        assert operator.terminate() > 0  # the pools' connections are all dead now
        for method, path, body in [
            ("GET", "/v1/conversations", None),
            ("GET", f"/v1/conversations/{cid}", None),
            ("POST", f"/v1/conversations/{cid}/messages", {"content": "while away"}),
            ("GET", f"/threads/{cid}/state", None),
            ("POST", "/threads/search", {}),
        ]:
            response = http.request(method, path, json=body, headers=headers)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "database" in response.json()["title"].lower(), response.text
    finally:
        operator.allow(True)
    # Back: the very first turn works (dead pooled connections are replaced at checkout).
    response = say(http, headers, cid, "after")
    assert response.status_code == 200, response.text
    assert response.json()["messages"][-1]["role"] == "assistant"
    assert http.get(f"/threads/{cid}/state", headers=headers).status_code == 200


def test_connections_terminated_mid_turn_leave_no_orphan_message(
    db: Database, http: httpx.Client, llm: ScriptedLLM, alice: tuple[uuid.UUID, dict[str, str]]
) -> None:
    _, headers = alice
    cid = new_conversation(http, headers)
    llm.enqueue(Reply(content="the slow answer", delay=1.5))
    answer: dict[str, httpx.Response] = {}
    turn = threading.Thread(
        target=lambda: answer.setdefault("r", say(http, headers, cid, "first question"))
    )
    turn.start()
    deadline = time.monotonic() + 10
    while (
        not llm.chat_requests()
        or llm.chat_requests()[-1]["messages"][-1].get("content") != "first question"
    ):
        assert time.monotonic() < deadline, "the model was never asked"
        time.sleep(0.05)
    Operator(db).terminate()  # while the model is still writing its answer
    turn.join(timeout=30)
    assert answer["r"].status_code == 503, answer["r"].text
    # The next message first completes the cut-off turn, then answers itself.
    response = say(http, headers, cid, "second question")
    assert response.status_code == 200, response.text
    history = roles(http, headers, cid)
    assert [r for r, _ in history] == ["user", "assistant", "user", "assistant"], history
    assert history[0][1] == "first question"
    conversation = http.get(f"/v1/conversations/{cid}", headers=headers).json()
    assert conversation["pending_turn"] is False


def test_a_turn_that_failed_before_its_first_checkpoint_is_answered_by_resume(
    db: Database, http: httpx.Client, alice: tuple[uuid.UUID, dict[str, str]]
) -> None:
    # What a failure between storing the user's message and the graph's first
    # checkpoint leaves: the message, turn_pending, and no checkpoint at all.
    user_id, headers = alice
    cid = new_conversation(http, headers)
    with db.engine.begin() as conn:
        store_messages(
            conn, uuid.UUID(cid), user_id, [NewMessage(f"u-{uuid.uuid4()}", "user", "lost?")]
        )
    assert http.get(f"/v1/conversations/{cid}", headers=headers).json()["pending_turn"] is True
    assert not http.get(f"/threads/{cid}/state", headers=headers).json()["values"]
    response = http.post(f"/v1/conversations/{cid}/resume", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["resumed"] is True
    assert [r for r, _ in roles(http, headers, cid)] == ["user", "assistant"]
    assert http.get(f"/v1/conversations/{cid}", headers=headers).json()["pending_turn"] is False
    state = http.get(f"/threads/{cid}/state", headers=headers).json()
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai"]
