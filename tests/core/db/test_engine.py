from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import event, text

from config import Settings, load_settings
from core.db import Database, open_database
from core.db.engine import normalize_url
from core.errors import ConfigError


@pytest.mark.parametrize(
    "raw",
    ["postgres://u:p@h:5432/d", "postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"],
)
def test_urls_are_pinned_to_psycopg3(raw: str) -> None:
    url = normalize_url(raw)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("h", 5432, "d")


def test_unparseable_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        normalize_url("postgresql://h:notaport/d")


def test_pool_follows_settings(pg_server: Any, template_db: str, test_settings: Settings) -> None:
    settings = load_settings(DB_MAX_CONNECTIONS=3, AGENTRY_HOME=str(test_settings.home_dir))
    database = open_database(settings, database=template_db)
    try:
        assert database.pool_stats()["max"] == 3
        with database.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            assert database.pool_stats()["in_use"] == 1
        assert database.pool_stats() == {"max": 3, "in_use": 0, "idle": 1, "overflow": 0}
    finally:
        database.dispose()


def backend_pid(database: Database) -> int:
    with database.engine.connect() as conn:
        pid: int = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return pid


def test_idle_connections_are_replaced_after_the_idle_timeout(
    pg_server: Any, template_db: str, test_settings: Settings
) -> None:
    settings = load_settings(DB_POOL_IDLE_TIMEOUT=0.5, AGENTRY_HOME=str(test_settings.home_dir))
    database = open_database(settings, database=template_db)
    try:
        first = backend_pid(database)
        assert backend_pid(database) == first  # reused while fresh
        time.sleep(0.8)
        assert backend_pid(database) != first  # idle too long: a new connection
    finally:
        database.dispose()


def test_connect_timeout_and_ssl_mode_reach_the_driver() -> None:
    settings = load_settings(
        DATABASE_URL="postgresql://u@db.invalid:5432/x", DB_SSL="require", DB_CONNECT_TIMEOUT=3
    )
    database = open_database(settings)
    seen: dict[str, Any] = {}

    def capture(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        seen.update(cparams)
        raise RuntimeError("captured")

    event.listen(database.engine, "do_connect", capture)
    try:
        with pytest.raises(RuntimeError, match="captured"):
            database.engine.connect()
    finally:
        database.dispose()
    assert seen["connect_timeout"] == 3
    assert seen["sslmode"] == "require"
    assert seen["host"] == "db.invalid"


def test_unix_socket_urls_do_not_ask_for_ssl(db: Database) -> None:
    settings = load_settings(
        DATABASE_URL=db.url.render_as_string(hide_password=False), DB_SSL="require"
    )
    database = open_database(settings)
    try:
        assert backend_pid(database) > 0
    finally:
        database.dispose()
