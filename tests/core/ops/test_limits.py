"""Rate limits (per key: requests and turns; per address: wrong keys) and the body limit,
against a live server on real sockets."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from core.api.app import create_app
from core.cli.main import app as cli
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.conftest import auth, create_test_user
from tests.core.ops.helpers import value
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings

MB = 1024 * 1024
LIMIT = 8 * MB  # AGENTRY_MAX_BODY_BYTES's default


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    settings = runtime_settings(
        llm.base_url,
        AGENTRY_EMBED_INTERVAL=0,
        AGENTRY_RATE_REQUESTS=1000,
        AGENTRY_RATE_TURNS=1000,
        AGENTRY_RATE_AUTH_FAILURES=3,
        AGENTRY_MAX_BODY_BYTES=LIMIT,
    )
    with LiveServer(create_app(db, settings)) as server:
        yield server


@pytest.fixture(scope="module")
def users(db: Database) -> dict[str, Any]:
    alice, alice_key = create_test_user(db, "alice@example.org")
    _, bob_key = create_test_user(db, "bob@example.org")
    _, admin_key = create_test_user(db, "root@example.org", admin=True)
    return {"alice": alice, "alice_key": alice_key, "bob_key": bob_key, "admin_key": admin_key}


def set_limits(live: LiveServer, users: dict[str, Any], **limits: int | None) -> dict[str, Any]:
    response = httpx.put(
        f"{live.url}/v1/users/{users['alice'].id}/limits",
        json=limits,
        headers=auth(users["admin_key"]),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def refusals(live: LiveServer, users: dict[str, Any], limit: str) -> float:
    scraped = httpx.get(f"{live.url}/metrics", headers=auth(users["admin_key"]))
    assert scraped.status_code == 200, scraped.text
    return value(scraped.text, "agentry_rate_limit_refusals_total", limit=limit)


def assert_too_many(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    wait = int(response.headers["Retry-After"])
    assert wait >= 1 and response.json().get("retry_after", wait) == wait
    return wait


def test_limits_api_is_for_admins_and_checks_input(live: LiveServer, users: dict[str, Any]) -> None:
    path = f"{live.url}/v1/users/{users['alice'].id}/limits"
    assert httpx.get(path, headers=auth(users["alice_key"])).status_code == 403
    shown = httpx.get(path, headers=auth(users["admin_key"])).json()
    assert shown["requests_per_minute"] is None  # the role's default is in force
    assert shown["effective"] == {
        "requests_per_minute": 1000,
        "turns_per_minute": 1000,
        "enabled": True,
    }
    bad = httpx.put(path, json={"turns_per_minute": -1}, headers=auth(users["admin_key"]))
    assert bad.status_code == 422 and "turns_per_minute" in bad.text
    unknown = httpx.put(
        f"{live.url}/v1/users/{uuid.uuid4()}/limits", json={}, headers=auth(users["admin_key"])
    )
    assert unknown.status_code == 404


def test_a_key_past_its_request_rate_gets_429_with_retry_after(
    live: LiveServer, users: dict[str, Any]
) -> None:
    before = refusals(live, users, "requests")
    assert set_limits(live, users, requests_per_minute=3)["effective"]["requests_per_minute"] == 3
    me = f"{live.url}/v1/me"
    statuses = [httpx.get(me, headers=auth(users["alice_key"])).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    wait = assert_too_many(httpx.get(me, headers=auth(users["alice_key"])))
    assert wait <= 20  # one token of 3 a minute
    # Another key has its own bucket.
    assert httpx.get(me, headers=auth(users["bob_key"])).status_code == 200
    assert refusals(live, users, "requests") == before + 1
    set_limits(live, users, requests_per_minute=None)
    assert httpx.get(me, headers=auth(users["alice_key"])).status_code == 200
    # Every change of a user's limits is audited, naming the admin.
    audit = httpx.get(
        f"{live.url}/v1/audit", params={"action": "user_limits"}, headers=auth(users["admin_key"])
    ).json()
    rows = audit["items"] if isinstance(audit, dict) else audit
    assert rows[0]["details"]["user_id"] == str(users["alice"].id)
    assert rows[0]["details"]["requests_per_minute"] is None
    assert rows[1]["details"]["requests_per_minute"] == 3
    assert rows[0]["actor"].startswith("user:")


def test_turns_have_their_own_rate_across_chat_apis(
    live: LiveServer, users: dict[str, Any]
) -> None:
    set_limits(live, users, turns_per_minute=1)
    key = auth(users["alice_key"])
    cid = httpx.post(f"{live.url}/v1/conversations", json={}, headers=key).json()["id"]
    said = httpx.post(
        f"{live.url}/v1/conversations/{cid}/messages", json={"content": "hi"}, headers=key
    )
    assert said.status_code == 200, said.text
    assert_too_many(
        httpx.post(
            f"{live.url}/v1/conversations/{cid}/messages", json={"content": "hi"}, headers=key
        )
    )
    openai_chat = httpx.post(
        f"{live.url}/v1/chat/completions",
        json={"model": "assistant", "messages": [{"role": "user", "content": "hi"}]},
        headers=key,
    )
    assert_too_many(openai_chat)
    # Requests that start no turn are not limited by it.
    assert httpx.get(f"{live.url}/v1/conversations/{cid}", headers=key).status_code == 200
    assert refusals(live, users, "turns") >= 2
    set_limits(live, users, turns_per_minute=0)  # 0: unlimited
    again = httpx.post(
        f"{live.url}/v1/conversations/{cid}/messages", json={"content": "hi"}, headers=key
    )
    assert again.status_code == 200, again.text


def test_wrong_keys_are_throttled_per_client_address(
    live: LiveServer, users: dict[str, Any]
) -> None:
    # Another loopback address than the other tests': its own bucket.
    guesser = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    me = f"{live.url}/v1/me"
    with guesser:
        wrong = [guesser.get(me, headers=auth(f"agk_wrong{i}")).status_code for i in range(3)]
        assert wrong == [401, 401, 401]
        assert_too_many(guesser.get(me, headers=auth("agk_wrong4")))
        # Throttled, the address is refused before any key is looked at, even a right one.
        assert_too_many(guesser.get(me, headers=auth(users["bob_key"])))
    assert httpx.get(me, headers=auth(users["bob_key"])).status_code == 200
    assert refusals(live, users, "auth_failures") >= 2


def raw_request(port: int, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head.encode())
    return sock


def read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, given = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(given)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(head.split()[1]), rest


def test_a_declared_20_mb_body_is_refused_before_it_is_sent(
    live: LiveServer, users: dict[str, Any]
) -> None:
    size = 20 * 1000 * 1000
    sock = raw_request(
        live.port,
        f"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {users['alice_key']}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n",
    )
    with sock:
        sock.sendall(b'{"metadata": {"x": "' + b"a" * 65536)  # a sliver of the 20 MB
        status, body = read_status(sock)
    assert status == 413
    assert b"AGENTRY_MAX_BODY_BYTES" in body


def test_a_chunked_20_mb_body_is_cut_off_near_the_limit(
    live: LiveServer, users: dict[str, Any]
) -> None:
    sock = raw_request(
        live.port,
        f"POST /v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {users['alice_key']}"
        "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    piece = b"a" * (256 * 1024)
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    with sock:
        sock.settimeout(0.2)
        status = None
        while sent < 20 * 1000 * 1000:
            try:
                sock.sendall(chunk)
                sent += len(piece)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        sock.settimeout(30)
        status, _ = read_status(sock)
    assert status == 413
    # The server stopped reading soon after the limit: the rest was never sent.
    assert LIMIT <= sent < 20 * 1000 * 1000


def test_a_big_json_body_from_a_client_library_gets_a_413_problem(
    live: LiveServer, users: dict[str, Any]
) -> None:
    body = json.dumps({"metadata": {"x": "a" * (20 * 1000 * 1000)}})
    try:
        response = httpx.post(
            f"{live.url}/v1/conversations",
            content=body,
            headers={**auth(users["alice_key"]), "Content-Type": "application/json"},
            timeout=60,
        )
    except httpx.TransportError:
        pytest.fail("the client should get the 413, not a broken connection")
    assert response.status_code == 413
    assert response.json()["status"] == 413
    # A body under the limit still works.
    small = httpx.post(
        f"{live.url}/v1/conversations",
        json={"metadata": {"x": "a" * 1000}},
        headers=auth(users["alice_key"]),
    )
    assert small.status_code == 201, small.text


def test_cli_shows_and_sets_a_users_limits(
    db: Database, users: dict[str, Any], use_database: Any
) -> None:
    use_database(db)
    runner = CliRunner()
    result = runner.invoke(
        cli, ["users", "limits", "--email", "bob@example.org", "--requests", "7", "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["requests_per_minute"] == 7 and shown["turns_per_minute"] is None
    assert shown["effective"]["requests_per_minute"] == 7
    result = runner.invoke(cli, ["users", "limits", "--email", "bob@example.org", "--turns", "2"])
    assert result.exit_code == 0, result.output
    assert "requests per minute: 7 (own)" in result.output
    assert "turns per minute: 2 (own)" in result.output
    result = runner.invoke(cli, ["users", "limits", "--email", "bob@example.org", "--reset"])
    assert "(role default)" in result.output
    result = runner.invoke(cli, ["users", "limits", "--email", "nobody@example.org"])
    assert result.exit_code != 0 and "no user" in result.output
