"""User creation, API key rotation and admin grants leave audit rows (never a key)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from core.api.app import create_app
from core.cli.main import app as cli
from core.db import Database
from tests.conftest import auth, create_test_user
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import runtime_settings


@pytest.fixture(scope="module")
def live(db: Database) -> Iterator[LiveServer]:
    with LiveServer(create_app(db, runtime_settings(None))) as server:
        yield server


def audit(db: Database, action: str) -> list[Any]:
    with db.engine.connect() as conn:
        return conn.execute(
            text("SELECT actor, details FROM audit_log WHERE action = :a ORDER BY created_at"),
            {"a": action},
        ).all()


def test_user_changes_are_audited(live: LiveServer, db: Database, use_database: Any) -> None:
    root, root_key = create_test_user(db, "root@audit.org", admin=True)
    made = httpx.post(
        f"{live.url}/v1/users", json={"email": "carol@audit.org"}, headers=auth(root_key)
    )
    assert made.status_code == 201, made.text
    carol = made.json()
    (created,) = [r for r in audit(db, "user.create") if r.details["email"] == "carol@audit.org"]
    assert created.actor == f"user:{root.id}"
    assert created.details == {"user": carol["id"], "email": "carol@audit.org", "role": "user"}

    granted = httpx.patch(
        f"{live.url}/v1/users/{carol['id']}", json={"role": "admin"}, headers=auth(root_key)
    )
    assert granted.status_code == 200 and granted.json()["role"] == "admin"
    refused = httpx.patch(
        f"{live.url}/v1/users/{carol['id']}",
        json={"role": "admin"},
        headers=auth(carol["api_key"] + "x"),
    )
    assert refused.status_code == 401
    (grant,) = audit(db, "user.role")
    assert grant.actor == f"user:{root.id}"
    assert (grant.details["from"], grant.details["to"]) == ("user", "admin")

    use_database(db)
    rotated = CliRunner().invoke(cli, ["users", "rotate-key", "--email", "carol@audit.org"])
    assert rotated.exit_code == 0, rotated.output
    revoked = CliRunner().invoke(
        cli, ["users", "set-role", "--email", "carol@audit.org", "--role", "user"]
    )
    assert revoked.exit_code == 0 and "is now user" in revoked.output
    (rotation,) = audit(db, "user.rotate_key")
    assert rotation.actor == "cli" and rotation.details["user"] == carol["id"]
    assert [r.details["to"] for r in audit(db, "user.role")] == ["admin", "user"]
    everything = str([r.details for a in ("user.create", "user.rotate_key") for r in audit(db, a)])
    assert carol["api_key"] not in everything and "agk_" not in everything
