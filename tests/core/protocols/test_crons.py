"""Crons through the real ``langgraph_sdk`` (sync and async) on live servers: CRUD,
isolation, validation, and ticks fired exactly once by two schedulers on one database."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from sqlalchemy import text

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.runs.crons import next_tick
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import ROOT, runtime_settings

PING = {"messages": [{"role": "user", "content": "ping"}]}


def _settings(llm: ScriptedLLM) -> Any:
    return runtime_settings(llm.base_url, AGENTRY_CRON_INTERVAL=0.05)


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    with LiveServer(create_app(db, _settings(llm))) as server:
        yield server


@pytest.fixture(scope="module")
def live2(db: Database, llm: ScriptedLLM) -> Iterator[LiveServer]:
    """A second app instance on the same database: a second scheduler."""
    with LiveServer(create_app(db, _settings(llm))) as server:
        yield server


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["alice"])


@pytest.fixture(scope="module")
def bob(live: LiveServer, keys: dict[str, str]) -> SyncLangGraphClient:
    return get_sync_client(url=live.url, api_key=keys["bob"])


# Once a year: the tests that count ticks bring each one forward themselves, and a
# minute boundary crossed during the test would add a tick of its own to the count.
RARE = "0 0 1 1 *"


def _make_due(db: Database, cron_ids: list[str]) -> None:
    """Bring the next tick forward to now (instead of waiting for the minute)."""
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE crons SET next_run_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": cron_ids},
        )


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _human_count(db: Database, thread_id: str) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM messages WHERE conversation_id = :id AND role = 'user'"
                ),
                {"id": thread_id},
            ).scalar_one()
        )


def test_next_tick_reads_the_schedule_in_its_timezone() -> None:
    # 9:00 in New York is 14:00 UTC in winter and 13:00 UTC after the DST change.
    winter = next_tick("0 9 * * *", "America/New_York", datetime(2026, 3, 7, 12, tzinfo=UTC))
    summer = next_tick("0 9 * * *", "America/New_York", datetime(2026, 3, 8, 12, tzinfo=UTC))
    assert winter == datetime(2026, 3, 7, 14, tzinfo=UTC)
    assert summer == datetime(2026, 3, 8, 13, tzinfo=UTC)  # 8:00 EDT then
    assert next_tick("@hourly", None, datetime(2026, 1, 1, 10, 30, tzinfo=UTC)) == datetime(
        2026, 1, 1, 11, tzinfo=UTC
    )
    end = datetime(2026, 1, 1, 10, 45, tzinfo=UTC)
    assert next_tick("0 * * * *", None, datetime(2026, 1, 1, 10, 30, tzinfo=UTC), end) is None


def test_sync_crud(alice: SyncLangGraphClient, bob: SyncLangGraphClient) -> None:
    thread = alice.threads.create()
    tid = thread["thread_id"]
    cron = alice.crons.create_for_thread(
        tid,
        "assistant",
        schedule="0 9 * * 1-5",
        input=PING,
        metadata={"team": "ops"},
        timezone="Europe/Paris",
    )
    assert cron["thread_id"] == tid and cron["assistant_id"] == "assistant"
    assert cron["schedule"] == "0 9 * * 1-5" and cron["timezone"] == "Europe/Paris"
    assert cron["enabled"] is True and cron["metadata"] == {"team": "ops"}
    assert cron["payload"]["input"] == PING
    tick = datetime.fromisoformat(cron["next_run_date"])
    assert tick > datetime.now(UTC) and tick.astimezone().weekday() < 5

    stateless = alice.crons.create(
        "assistant", schedule="*/5 * * * *", input=PING, on_run_completed="keep"
    )
    assert stateless["thread_id"] is None and stateless["on_run_completed"] == "keep"

    found = alice.crons.search(assistant_id="assistant")
    assert {c["cron_id"] for c in found} == {cron["cron_id"], stateless["cron_id"]}
    assert [c["cron_id"] for c in alice.crons.search(thread_id=tid)] == [cron["cron_id"]]
    assert [c["cron_id"] for c in alice.crons.search(metadata={"team": "ops"})] == [
        cron["cron_id"]
    ]
    ordered = alice.crons.search(sort_by="created_at", sort_order="asc")
    assert [c["cron_id"] for c in ordered] == [cron["cron_id"], stateless["cron_id"]]
    picked = alice.crons.search(thread_id=tid, select=["cron_id", "schedule"])
    assert picked == [{"cron_id": cron["cron_id"], "schedule": "0 9 * * 1-5"}]
    assert alice.crons.count() == 2
    assert alice.crons.count(thread_id=tid) == 1

    updated = alice.crons.update(cron["cron_id"], schedule="30 7 * * *", enabled=False)
    assert updated["schedule"] == "30 7 * * *" and updated["enabled"] is False
    assert alice.crons.search(enabled=False)[0]["cron_id"] == cron["cron_id"]
    assert updated["payload"]["input"] == PING  # untouched options stay
    later = alice.crons.update(cron["cron_id"], end_time=datetime.now(UTC) + timedelta(days=3))
    assert later["end_time"] is not None
    cleared = alice.crons.update(cron["cron_id"], end_time=None)
    assert cleared["end_time"] is None

    # Another user sees none of it, and cannot change or delete it.
    assert bob.crons.search() == [] and bob.crons.count() == 0
    for attempt in (
        lambda: bob.crons.update(cron["cron_id"], enabled=True),
        lambda: bob.crons.delete(cron["cron_id"]),
        lambda: bob.crons.create_for_thread(tid, "assistant", schedule="* * * * *", input=PING),
    ):
        with pytest.raises(httpx.HTTPStatusError) as hidden:
            attempt()
        assert hidden.value.response.status_code == 404

    alice.crons.delete(cron["cron_id"])
    alice.crons.delete(stateless["cron_id"])
    assert alice.crons.count() == 0
    with pytest.raises(httpx.HTTPStatusError) as gone:
        alice.crons.delete(cron["cron_id"])
    assert gone.value.response.status_code == 404


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"schedule": "every monday"}, "schedule"),
        ({"schedule": "61 * * * *"}, "schedule"),
        ({"schedule": "* * * * * *"}, "schedule"),
        ({"schedule": "0 0 31 2 *"}, "schedule"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"input": None}, "input"),
        ({"config": {"tags": ["x"]}}, "config.tags"),
        ({"durability": "exit"}, "durability"),
        ({"webhook": "http://127.0.0.1:9/hook"}, "webhook"),
        ({"stream_mode": "nope"}, "stream_mode"),
    ],
)
def test_bad_crons_are_422_naming_the_field(
    alice: SyncLangGraphClient, options: dict[str, Any], field: str
) -> None:
    arguments: dict[str, Any] = {"schedule": "* * * * *", "input": PING, **options}
    with pytest.raises(httpx.HTTPStatusError) as refused:
        alice.crons.create("assistant", **arguments)
    assert refused.value.response.status_code == 422
    assert refused.value.response.json()["detail"].startswith(field)


def test_run_options_of_crons(
    alice: SyncLangGraphClient, live: LiveServer, keys: dict[str, str]
) -> None:
    paused = alice.crons.create(
        "assistant", schedule="@daily", input=PING, interrupt_before=["tools"]
    )
    assert paused["payload"]["interrupt_before"] == ["tools"]
    alice.crons.delete(paused["cron_id"])
    with pytest.raises(httpx.HTTPStatusError) as bad_node:
        alice.crons.create(
            "assistant", schedule="@daily", input=PING, interrupt_before=[1]  # type: ignore[list-item]
        )
    assert bad_node.value.response.status_code == 422
    assert "interrupt_before" in bad_node.value.response.json()["detail"]
    resume = httpx.post(
        f"{live.url}/runs/crons",
        json={
            "assistant_id": "assistant",
            "schedule": "@daily",
            "input": PING,
            "command": {"resume": "yes"},
        },
        headers={"x-api-key": keys["alice"]},
    )
    assert resume.status_code == 422 and resume.json()["detail"].startswith("command")


def test_unknown_assistant_and_search_options(alice: SyncLangGraphClient) -> None:
    with pytest.raises(httpx.HTTPStatusError) as missing:
        alice.crons.create("no-such-agent", schedule="* * * * *", input=PING)
    assert missing.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as bad_sort:
        alice.crons.search(sort_by="schedule")  # type: ignore[arg-type]
    assert bad_sort.value.response.status_code == 422
    assert "sort_by" in bad_sort.value.response.text


def test_async_crud(live: LiveServer, keys: dict[str, str]) -> None:
    async def scenario() -> None:
        client = get_client(url=live.url, api_key=keys["alice"])
        thread = await client.threads.create()
        cron = await client.crons.create_for_thread(
            thread["thread_id"], "assistant", schedule="@daily", input=PING
        )
        stateless = await client.crons.create("assistant", schedule="0 0 1 * *", input=PING)
        assert await client.crons.count() == 2
        found = await client.crons.search(thread_id=thread["thread_id"])
        assert [c["cron_id"] for c in found] == [cron["cron_id"]]
        changed = await client.crons.update(stateless["cron_id"], timezone="Asia/Tokyo")
        assert changed["timezone"] == "Asia/Tokyo"
        tick = datetime.fromisoformat(changed["next_run_date"])
        local = tick.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo"))
        assert (local.day, local.hour, local.minute) == (1, 0, 0)
        await client.crons.delete(cron["cron_id"])
        await client.crons.delete(stateless["cron_id"])
        assert await client.crons.count() == 0

    asyncio.run(scenario())


def test_each_tick_runs_once_with_two_schedulers(
    db: Database,
    live: LiveServer,
    live2: LiveServer,
    alice: SyncLangGraphClient,
    keys: dict[str, str],
) -> None:
    other = get_sync_client(url=live2.url, api_key=keys["alice"])
    threads = [alice.threads.create()["thread_id"] for _ in range(6)]
    cron_ids = [
        alice.crons.create_for_thread(tid, "assistant", schedule=RARE, input=PING)[
            "cron_id"
        ]
        for tid in threads
    ]
    _make_due(db, cron_ids)
    _until(lambda: all(_human_count(db, tid) >= 1 for tid in threads))
    time.sleep(0.5)  # both schedulers polled many times since
    assert [_human_count(db, tid) for tid in threads] == [1] * 6
    assert _runs_per_cron(db, cron_ids) == [1] * 6

    # The run is an ordinary run of the thread, made by the cron, answered by the agent.
    for tid in threads:
        _until(lambda tid=tid: alice.threads.get(tid)["status"] == "idle")
        state = alice.threads.get_state(tid)
        assert [m["content"] for m in state["values"]["messages"]] == ["ping", "echo: ping"]
    runs = {
        r["run_id"]: r
        for client in (alice, other)
        for tid in threads
        for r in client.runs.list(tid)
    }
    assert len(runs) == 6
    assert {r["metadata"]["cron_id"] for r in runs.values()} == set(cron_ids)
    # Each cron moved on to its next tick.
    for cron in alice.crons.search(limit=100):
        assert datetime.fromisoformat(cron["next_run_date"]) > datetime.now(UTC)
    for cron_id in cron_ids:
        alice.crons.delete(cron_id)


def test_a_tick_on_a_busy_thread_follows_the_multitask_strategy(
    db: Database, alice: SyncLangGraphClient, llm: ScriptedLLM
) -> None:
    tid = alice.threads.create()["thread_id"]
    skip = alice.crons.create_for_thread(tid, "assistant", schedule=RARE, input=PING)
    wait = alice.crons.create_for_thread(
        tid, "assistant", schedule=RARE, input=PING, multitask_strategy="enqueue"
    )
    llm.enqueue(Reply("slow answer", delay=2))
    alice.runs.create(tid, "assistant", input={"messages": [{"role": "user", "content": "hi"}]})
    _until(lambda: alice.threads.get(tid)["status"] == "busy")
    _make_due(db, [skip["cron_id"], wait["cron_id"]])
    _until(lambda: _runs_per_cron(db, [wait["cron_id"]]) == [1])
    time.sleep(0.3)
    assert _runs_per_cron(db, [skip["cron_id"]]) == [0]  # reject: that tick is skipped
    _until(lambda: _human_count(db, tid) == 2 and alice.threads.get(tid)["status"] == "idle")
    contents = [m["content"] for m in alice.threads.get_state(tid)["values"]["messages"]]
    assert contents == ["hi", "slow answer", "ping", "echo: ping"]
    for cron in (skip, wait):
        alice.crons.delete(cron["cron_id"])


def test_disabled_and_ended_crons_do_not_fire(
    db: Database, alice: SyncLangGraphClient, live2: LiveServer
) -> None:
    tid = alice.threads.create()["thread_id"]
    cron = alice.crons.create_for_thread(tid, "assistant", schedule="* * * * *", input=PING)
    alice.crons.update(cron["cron_id"], enabled=False)
    _make_due(db, [cron["cron_id"]])
    time.sleep(0.5)
    assert _human_count(db, tid) == 0
    alice.crons.delete(cron["cron_id"])
    ended = alice.crons.create_for_thread(
        tid,
        "assistant",
        schedule="* * * * *",
        input=PING,
        end_time=datetime.now(UTC) - timedelta(minutes=1),
    )
    assert ended["next_run_date"] is None
    alice.crons.delete(ended["cron_id"])


def test_deleting_the_thread_deletes_its_crons(db: Database, alice: SyncLangGraphClient) -> None:
    tid = alice.threads.create()["thread_id"]
    cron = alice.crons.create_for_thread(tid, "assistant", schedule="* * * * *", input=PING)
    alice.threads.delete(tid)  # soft delete: the cron goes at the next poll, unfired
    _make_due(db, [cron["cron_id"]])
    _until(lambda: alice.crons.count() == 0)
    assert _human_count(db, tid) == 0
    tid = alice.threads.create()["thread_id"]
    alice.crons.create_for_thread(tid, "assistant", schedule="* * * * *", input=PING)
    with db.engine.begin() as conn:  # what agentry prune does to long-deleted threads
        conn.execute(text("DELETE FROM conversations WHERE id = :id"), {"id": uuid.UUID(tid)})
    assert alice.crons.count(thread_id=tid) == 0


@pytest.mark.slow
def test_each_tick_runs_once_across_two_processes(
    db: Database, llm: ScriptedLLM, alice: SyncLangGraphClient, tmp_path: Path
) -> None:
    """This process's scheduler and an ``agentry worker`` process's, on one database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTRY_", "DB_"))}
    env |= {
        "DATABASE_URL": db.url.render_as_string(hide_password=False),
        "AGENTRY_HOME": str(tmp_path / "home"),
        "AGENTRY_PROJECT_DIR": str(ROOT),
        "AGENTRY_LLM_BASE_URL": llm.base_url,
        "AGENTRY_LLM_MODEL": "scripted",
        "AGENTRY_CRON_INTERVAL": "0.05",
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    }
    other = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(other.stdout or []), daemon=True)
    reader.start()
    try:
        _until(lambda: any("agentry worker:" in line for line in lines), timeout=120)
        threads = [alice.threads.create()["thread_id"] for _ in range(8)]
        cron_ids = [
            alice.crons.create_for_thread(tid, "assistant", schedule=RARE, input=PING)[
                "cron_id"
            ]
            for tid in threads
        ]
        for round_ in (1, 2):
            _make_due(db, cron_ids)
            _until(lambda r=round_: all(_human_count(db, t) >= r for t in threads))
            time.sleep(0.5)
            assert [_human_count(db, tid) for tid in threads] == [round_] * 8
            assert _runs_per_cron(db, cron_ids) == [round_] * 8
            for tid in threads:
                _until(lambda tid=tid: alice.threads.get(tid)["status"] == "idle")
    finally:
        other.send_signal(signal.SIGTERM)
        other.wait(timeout=60)
        reader.join(timeout=10)
    assert other.returncode == 0, "".join(lines)
    for cron_id in cron_ids:
        alice.crons.delete(cron_id)


def _runs_per_cron(db: Database, cron_ids: list[str]) -> list[int]:
    """How many durable runs each cron made."""
    with db.engine.connect() as conn:
        counts = dict(
            conn.execute(
                text(
                    "SELECT metadata->>'cron_id', count(*) FROM runs"
                    " WHERE metadata->>'cron_id' = ANY(:ids) GROUP BY 1"
                ),
                {"ids": cron_ids},
            ).all()
        )
    return [counts.get(c, 0) for c in cron_ids]
