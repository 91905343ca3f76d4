"""Two ``agentry up`` processes on one database share every bucket: a key's request rate
and an address's wrong-key rate hold across them, and each process counts its own refusals."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from core.db import Database
from tests.conftest import auth, create_test_user, fresh_database
from tests.core.ops.helpers import value
from tests.core.protocols.test_runs_processes import Server
from tests.core.runtime.helpers import ROOT

PER_MINUTE = 6  # one token every 10 s: the test's requests take far less
WRONG_KEYS = 4


@pytest.fixture(scope="module")
def shared(pg_server: Any, template_db: str, test_settings: Any) -> Iterator[Database]:
    database = fresh_database(pg_server, test_settings, "limits_processes")
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def servers(
    shared: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, Server]]:
    logs = tmp_path_factory.mktemp("servers")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": shared.url.render_as_string(hide_password=False),
        "AGENTRY_PROJECT_DIR": str(ROOT),
        "AGENTRY_EMBED_INTERVAL": "0",
        "AGENTRY_RUN_WORKERS": "0",
        "AGENTRY_CRON_INTERVAL": "0",
        "AGENTRY_WEBHOOK_INTERVAL": "0",
        "AGENTRY_RATE_REQUESTS": str(PER_MINUTE),
        "AGENTRY_RATE_REQUESTS_ADMIN": "0",
        "AGENTRY_RATE_AUTH_FAILURES": str(WRONG_KEYS),
    }
    a = Server(env, logs / "a.log")
    try:
        a.wait_ready()
        b = Server(env, logs / "b.log")
        try:
            b.wait_ready()
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


def refused(server: Server, admin: str, limit: str) -> float:
    scraped = httpx.get(f"{server.url}/metrics", headers=auth(admin))
    assert scraped.status_code == 200, scraped.text
    return value(scraped.text, "agentry_rate_limit_refusals_total", limit=limit)


@pytest.mark.slow
def test_a_key_and_an_address_share_their_buckets_across_processes(
    shared: Database, servers: tuple[Server, Server]
) -> None:
    a, b = servers
    _, key = create_test_user(shared, "carol@example.org")
    _, admin = create_test_user(shared, "root@example.org", admin=True)
    started = time.monotonic()
    answers: dict[str, list[int]] = {a.url: [], b.url: []}
    for i in range(4 * PER_MINUTE):
        server = (a, b)[i % 2]
        answers[server.url].append(httpx.get(f"{server.url}/v1/me", headers=auth(key)).status_code)
    elapsed = time.monotonic() - started
    served = sum(s == 200 for got in answers.values() for s in got)
    # One bucket: its 6 tokens, plus what refilled meanwhile (one per 10 s), in all.
    assert PER_MINUTE <= served <= PER_MINUTE + math.ceil(elapsed * PER_MINUTE / 60)
    for got in answers.values():
        assert set(got) == {200, 429}  # each process served some and refused some
    refusals = [s == 429 for got in answers.values() for s in got]
    assert refused(a, admin, "requests") + refused(b, admin, "requests") == sum(refusals)
    # Each process counts only its own refusals.
    assert refused(a, admin, "requests") == answers[a.url].count(429)

    # Wrong keys from one address: 2 to each process use up the address's 4.
    for server in (a, b, a, b):
        assert httpx.get(f"{server.url}/v1/me", headers=auth("agk_guess")).status_code == 401
    for server in (a, b):
        response = httpx.get(f"{server.url}/v1/me", headers=auth("agk_guess"))
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
