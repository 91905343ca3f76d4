from __future__ import annotations

from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings
from core.cli.main import app
from core.db import migrate
from tests.conftest import fresh_database

runner = CliRunner()


def test_db_upgrade_then_seed_twice(
    pg_server: Any, test_settings: Settings, use_database: Any
) -> None:
    database = fresh_database(pg_server, test_settings, "cli_upgrade", template=None)
    try:
        use_database(database)
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        head = migrate.head_revision()
        assert head is not None and head in result.output
        with database.engine.connect() as conn:
            assert migrate.current_revision(conn) == head

        first = runner.invoke(app, ["seed"])
        assert first.exit_code == 0, first.output
        assert "added 6 models and 2 agents" in first.output
        second = runner.invoke(app, ["seed"])
        assert second.exit_code == 0
        assert "nothing to add" in second.output
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM ai_models")).scalar_one() == 6

        current = runner.invoke(app, ["db", "current"])
        assert f"current: {head}  head: {head}" in current.output
    finally:
        database.dispose()


def test_version_command() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.startswith("agentry ")
