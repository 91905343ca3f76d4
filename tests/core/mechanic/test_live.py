"""Live without restart in every server process: two uvicorn processes on one database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from config import Settings
from core.db import Database
from core.db.migrate import MIGRATION_LOCK_KEY
from tests.conftest import auth, create_test_user

ROOT = Path(__file__).resolve().parents[3]
PLANET = {
    "action": "add_entity",
    "entity": "planet",
    "fields": [
        {"name": "name", "type": "string", "max_length": 80, "required": True},
        {"name": "description", "type": "text", "searchable": True},
    ],
}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def servers(
    db: Database, msettings: Settings, project: Path
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTRY_", "DB_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=db.url.render_as_string(hide_password=False),
        AGENTRY_HOME=str(msettings.home_dir),
        AGENTRY_PROJECT_DIR=str(project),
        AGENTRY_BACKUP_DIR=str(project.parent / "backups"),
        DB_MAX_CONNECTIONS="4",
    )
    procs = []
    for lock_wait in ("30", "1"):
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "core.api.app:create_app", "--factory",
             "--port", str(port), "--log-level", "warning"],
            env={**env, "AGENTRY_MECHANIC_LOCK_WAIT": lock_wait},
            cwd=str(project.parent),
        )  # fmt: skip
        procs.append((f"http://127.0.0.1:{port}", proc))
    try:
        for url, proc in procs:

            def up(url: str = url, proc: Any = proc) -> bool:
                assert proc.poll() is None, "server died"
                try:
                    return httpx.get(f"{url}/health", timeout=1).status_code < 500
                except httpx.HTTPError:
                    return False

            wait_for(up, 60, f"server {url}")
        yield procs
    finally:
        for _, proc in procs:
            proc.terminate()
        for _, proc in procs:
            proc.wait(timeout=10)


def test_an_entity_applied_through_one_process_is_live_in_the_other(
    servers: list[tuple[str, Any]], db: Database
) -> None:
    (a, _), (b, _) = servers
    _, admin_key = create_test_user(db, "live-admin@example.com", admin=True)
    _, user_key = create_test_user(db, "live-user@example.com")
    admin, user = auth(admin_key), auth(user_key)
    assert httpx.get(f"{b}/v1/entities/planet", headers=user).status_code == 404

    planned = httpx.post(
        f"{a}/v1/mechanic/changes", json={"spec": PLANET}, headers=admin, timeout=60
    )
    assert planned.status_code == 201, planned.text
    change = planned.json()["id"]
    applied = httpx.post(f"{a}/v1/mechanic/changes/{change}/apply", headers=admin, timeout=60)
    assert applied.status_code == 200, applied.text

    # Process B never restarted: NOTIFY makes the entity live there.
    took = wait_for(
        lambda: httpx.get(f"{b}/v1/entities/planet", headers=user).status_code == 200,
        10,
        "planet live on B",
    )
    assert took < 5
    made = httpx.post(
        f"{b}/v1/entities/planet",
        json={"name": "Arrakis", "description": "desert world"},
        headers=user,
    )
    assert made.status_code == 201, made.text
    items = httpx.get(f"{a}/v1/entities/planet", headers=user).json()["items"]
    assert [p["name"] for p in items] == ["Arrakis"]
    assert httpx.post(f"{b}/v1/entities/planet", json={"name": 7}, headers=user).status_code == 422

    # Rolled back through B: gone from A as well, without a restart.
    rolled = httpx.post(f"{b}/v1/mechanic/changes/{change}/rollback", headers=admin, timeout=60)
    assert rolled.status_code == 200, rolled.text
    wait_for(
        lambda: httpx.get(f"{a}/v1/entities/planet", headers=user).status_code == 404,
        10,
        "planet retired on A",
    )


def test_a_concurrent_apply_in_another_process_waits_then_fails_clearly(
    servers: list[tuple[str, Any]], db: Database
) -> None:
    (_, _), (b, _) = servers
    _, admin_key = create_test_user(db, "live-admin2@example.com", admin=True)
    admin = auth(admin_key)
    planned = httpx.post(
        f"{b}/v1/mechanic/changes",
        json={"spec": dict(PLANET, entity="moon")},
        headers=admin,
        timeout=60,
    )
    assert planned.status_code == 201, planned.text
    holder = db.engine.connect()  # someone else is applying a change right now
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    holder.commit()
    try:
        started = time.monotonic()
        busy = httpx.post(
            f"{b}/v1/mechanic/changes/{planned.json()['id']}/apply", headers=admin, timeout=60
        )
        waited = time.monotonic() - started
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        holder.commit()
        holder.close()
    assert busy.status_code == 409
    assert "another schema change is being applied; waited 1 s" in busy.json()["detail"]
    assert 1.0 <= waited < 10
    done = httpx.post(
        f"{b}/v1/mechanic/changes/{planned.json()['id']}/apply", headers=admin, timeout=60
    )
    assert done.status_code == 200, done.text
