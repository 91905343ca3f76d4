"""Commands other than `up` and `db upgrade` find the database or say where they looked."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from config import Settings, reset_settings
from core.cli.main import app
from core.db import Database
from tests.conftest import fresh_database

runner = CliRunner()


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An AGENTRY_HOME with no database, and a current folder of its own."""
    home = tmp_path / "home"
    monkeypatch.setenv("AGENTRY_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    reset_settings()
    yield home
    reset_settings()


@pytest.mark.parametrize(
    "command",
    [["users", "list"], ["audit"], ["mechanic", "list"], ["search", "x"], ["prune", "--dry-run"]],
)
def test_no_database_is_one_line_and_nothing_is_created(
    elsewhere: Path, tmp_path: Path, command: list[str]
) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0] == (
        f"error: no Agentry database in {elsewhere / 'pgdata'} (AGENTRY_HOME={elsewhere}): run "
        "`agentry up` first, or point AGENTRY_HOME (or DATABASE_URL) at the one it uses"
    )
    assert not (elsewhere / "pgdata").exists()
    assert [p for p in tmp_path.iterdir() if p != elsewhere] == []  # nothing in the folder


def test_doctor_reports_the_missing_database_without_creating_it(elsewhere: Path) -> None:
    result = runner.invoke(app, ["doctor", "--skip-embedding"])
    assert result.exit_code == 1
    assert "no Agentry database in" in result.output.replace("\n", "")
    assert not (elsewhere / "pgdata").exists()


def test_a_missing_database_on_the_server_is_named(
    pg_server: Any, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRY_DB_NAME", "nobody_made_this")
    reset_settings()
    try:
        result = runner.invoke(app, ["users", "list"])
    finally:
        reset_settings()
    assert result.exit_code != 0
    assert "has no database 'nobody_made_this' (AGENTRY_DB_NAME): run `agentry db upgrade`" in (
        result.output.replace("\n", "")
    )
    from core.db.embedded import database_exists

    assert not database_exists(pg_server, "nobody_made_this")


def test_an_unmigrated_database_is_one_line_not_a_traceback(
    pg_server: Any, test_settings: Settings, use_database: Any
) -> None:
    database: Database = fresh_database(pg_server, test_settings, "unmigrated", template=None)
    try:
        use_database(database)
        result = runner.invoke(app, ["users", "list"])
        current = runner.invoke(app, ["db", "current"])
    finally:
        database.dispose()
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: {database.display_url} has no Agentry schema yet: run `agentry db upgrade` "
        "(or `agentry up`) first"
    ]
    assert current.exit_code == 0 and "current: (none)" in current.output
