"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per module.

The session migrates a template database once; each module gets a copy
(``CREATE DATABASE ... TEMPLATE``), which takes a fraction of a second.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings, reset_settings
from core.db import Database, open_database, prepare_database
from core.db.embedded import ensure_database, start_server

TEMPLATE_DB = "agentry_template"
_ENV_PREFIXES = ("AGENTRY_", "DB_", "DATABASE_URL", "OTEL_")
# The suite runs many requests and turns a minute from one address and a few keys: the
# rate limits are lifted for it (child servers inherit them); tests/core/limits sets its own.
SUITE_LIMITS = {
    "AGENTRY_RATE_REQUESTS": "0",
    "AGENTRY_RATE_REQUESTS_ADMIN": "0",
    "AGENTRY_RATE_TURNS": "0",
    "AGENTRY_RATE_TURNS_ADMIN": "0",
    "AGENTRY_RATE_AUTH_FAILURES": "0",
}
_counter = itertools.count()


@pytest.fixture(scope="session", autouse=True)
def clean_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests never see the developer's AGENTRY_* / DB_* variables or .env file."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)}
    for key in saved:
        del os.environ[key]
    home = tmp_path_factory.mktemp("agentry-home")
    os.environ["AGENTRY_HOME"] = str(home)
    os.environ.update(SUITE_LIMITS)
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # no stray .env is read
    reset_settings()
    yield home
    os.chdir(cwd)
    for key in [k for k in os.environ if k.startswith(_ENV_PREFIXES)]:
        del os.environ[key]
    os.environ.update(saved)
    reset_settings()


@pytest.fixture(scope="session")
def test_settings(clean_environment: Path) -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def pg_server(test_settings: Settings) -> Any:
    """The embedded server, started once for the whole session."""
    return start_server(test_settings.home_dir / "pgdata")


@pytest.fixture(scope="session")
def template_db(pg_server: Any, test_settings: Settings) -> str:
    """A database at migration head with checkpoint tables, copied by every test DB."""
    db = open_database(test_settings, database=TEMPLATE_DB)
    try:
        prepare_database(db, test_settings)
    finally:
        db.dispose()
    return TEMPLATE_DB


def fresh_database(
    pg_server: Any, settings: Settings, label: str, *, template: str | None = TEMPLATE_DB
) -> Database:
    """A new database on the session server, copied from ``template`` (or empty)."""
    name = f"t_{re.sub(r'[^a-z0-9]+', '_', label.lower())[-40:]}_{next(_counter)}"
    ensure_database(pg_server, name, template=template)
    return open_database(settings, database=name)


@pytest.fixture(scope="module")
def db(
    pg_server: Any, template_db: str, test_settings: Settings, request: Any
) -> Iterator[Database]:
    """A migrated database of this test module's own."""
    database = fresh_database(pg_server, test_settings, request.module.__name__)
    yield database
    database.dispose()


@pytest.fixture
def empty_db(pg_server: Any, test_settings: Settings, request: Any) -> Iterator[Database]:
    """A database with nothing in it, not even pgvector (for migration tests)."""
    database = fresh_database(pg_server, test_settings, request.node.name, template=None)
    yield database
    database.dispose()


@pytest.fixture
def use_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Point the process settings (what the CLI reads) at a given database."""

    def point(database: Database | str) -> None:
        url = (
            database
            if isinstance(database, str)
            else database.url.render_as_string(hide_password=False)
        )
        monkeypatch.setenv("DATABASE_URL", url)
        reset_settings()

    yield point
    reset_settings()


def create_test_user(database: Database, email: str, *, admin: bool = False) -> tuple[Any, str]:
    """A user and its API key, committed."""
    from core.auth.users import create_user

    with database.engine.begin() as conn:
        return create_user(conn, email, admin=admin)


def auth(key: str) -> dict[str, str]:
    """Request headers carrying an API key."""
    return {"Authorization": f"Bearer {key}"}
