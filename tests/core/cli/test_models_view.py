"""`agentry models list` judges usability from the server's environment, not the shell's."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings
from core.cli.main import app
from core.db import Database
from core.health import database_checks
from core.runtime.lifecycle import sync_at_start

runner = CliRunner()

ROWS_SQL = text(
    "INSERT INTO ai_models (name, provider, api_endpoint, model_id, api_key_env) VALUES"
    " ('server-side', 'x', 'http://server.example/v1', 'm1', 'SERVER_SIDE_KEY'),"
    " ('shell-side', 'x', 'http://shell.example/v1', 'm2', 'SHELL_SIDE_VAR')"
)


def listed() -> dict[str, dict[str, Any]]:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    return {m["name"]: m for m in json.loads(result.stdout)}


def test_usable_is_what_the_server_has(
    db: Database, test_settings: Settings, use_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.engine.begin() as conn:
        conn.execute(ROWS_SQL)
    use_database(db)
    # Before any server started: this shell is all there is to judge from.
    monkeypatch.setenv("SHELL_SIDE_VAR", "k")
    before = listed()
    assert before["shell-side"]["usable"] is True and before["shell-side"]["judged_by"] == "shell"
    assert "no server has started on this database yet" in runner.invoke(
        app, ["models", "list"]
    ).output.replace("\n", " ")

    # The server starts with its own environment (a key and a default model) ...
    monkeypatch.delenv("SHELL_SIDE_VAR")
    monkeypatch.setenv("SERVER_SIDE_KEY", "secret")
    server = test_settings.model_copy(
        update={"llm_base_url": "http://llm.example/v1", "llm_model": "small"}
    )
    sync_at_start(db, server)
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT config::text FROM server_config")).scalar_one()
    assert "secret" not in stored  # names only, never values

    # ... and the CLI, run from a shell without any of it, reports the server's view.
    monkeypatch.delenv("SERVER_SIDE_KEY")
    monkeypatch.setenv("SHELL_SIDE_VAR", "k")
    after = listed()
    assert after["server-side"]["usable"] is True and after["server-side"]["judged_by"] == "server"
    assert after["shell-side"]["usable"] is False
    assert after["default"]["usable"] is True
    table = runner.invoke(app, ["models", "list"]).output.replace("\n", " ")
    assert "usable: as configured for the server started" in table


def test_health_checks_log_no_alembic_lines(
    db: Database, test_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        checks = database_checks(db, test_settings)
    assert all(c.ok for c in checks)
    assert [r for r in caplog.records if r.name.startswith("alembic")] == []
