from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from core.auth.users import authenticate, create_user, hash_api_key, rotate_key
from core.cli.main import app
from core.db import Database
from core.errors import AuthError, ConflictError, ValidationFailed


def test_keys_are_stored_hashed_and_authenticate(db: Database) -> None:
    with db.engine.begin() as conn:
        user, key = create_user(conn, "hash@example.org", name="H")
        stored = conn.execute(
            text("SELECT api_key_hash FROM users WHERE id = :i"), {"i": user.id}
        ).scalar_one()
    assert key.startswith("agk_") and len(key) > 40
    assert stored == hash_api_key(key) and key not in stored
    with db.engine.connect() as conn:
        assert authenticate(conn, key).id == user.id
        with pytest.raises(AuthError):
            authenticate(conn, key + "x")


def test_duplicate_and_invalid_emails_are_refused(db: Database) -> None:
    with db.engine.begin() as conn:
        create_user(conn, "dup@example.org")
    with db.engine.begin() as conn, pytest.raises(ConflictError, match="already exists"):
        create_user(conn, "DUP@example.org")
    with db.engine.begin() as conn, pytest.raises(ValidationFailed, match="not an email"):
        create_user(conn, "nobody")


def test_rotated_key_replaces_the_old_one(db: Database) -> None:
    with db.engine.begin() as conn:
        _, old = create_user(conn, "rot@example.org")
        new = rotate_key(conn, "Rot@example.org")
    with db.engine.connect() as conn:
        assert authenticate(conn, new).email == "rot@example.org"
        with pytest.raises(AuthError):
            authenticate(conn, old)


def test_deactivated_user_is_refused(db: Database) -> None:
    with db.engine.begin() as conn:
        _, key = create_user(conn, "gone@example.org")
        conn.execute(text("UPDATE users SET is_active = false WHERE email = 'gone@example.org'"))
    with db.engine.connect() as conn, pytest.raises(AuthError):
        authenticate(conn, key)


def test_cli_creates_a_user_and_prints_its_key_once(db: Database, use_database: Any) -> None:
    use_database(db)
    result = CliRunner().invoke(
        app, ["users", "create", "--email", "cli@example.org", "--admin", "--json"]
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["role"] == "admin"
    with db.engine.connect() as conn:
        assert authenticate(conn, created["api_key"]).is_admin

    again = CliRunner().invoke(app, ["users", "create", "--email", "cli@example.org"])
    assert again.exit_code == 1
    assert "already exists" in again.output
