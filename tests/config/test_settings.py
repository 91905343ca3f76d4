from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_settings
from config.settings import SslMode, default_home
from core.errors import ConfigError


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTRY_HOME")
    s = load_settings()
    assert s.database_url is None and s.uses_embedded_database
    assert s.db_ssl is SslMode.prefer
    assert s.db_max_connections == 10
    assert s.db_pool_idle_timeout == 30
    assert s.db_connect_timeout == 5
    assert s.home == default_home() and s.home.is_absolute()  # per user, not per folder
    assert (s.embedding_model, s.embedding_dims) == ("all-MiniLM-L6-v2", 384)
    assert s.llm_base_url is None and s.llm_model is None and s.llm_api_key is None


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/app")
    monkeypatch.setenv("DB_SSL", "require")
    monkeypatch.setenv("DB_MAX_CONNECTIONS", "25")
    monkeypatch.setenv("AGENTRY_LLM_BASE_URL", "http://localhost:11434/v1/")
    monkeypatch.setenv("AGENTRY_LLM_MODEL", "llama3")
    monkeypatch.setenv("AGENTRY_EMBEDDING_DIMS", "1536")
    s = load_settings()
    assert s.database_url == "postgres://u:p@db.example:5432/app"
    assert s.db_ssl is SslMode.require
    assert s.db_max_connections == 25
    assert s.llm_base_url == "http://localhost:11434/v1"
    assert s.llm_model == "llama3"
    assert s.embedding_dims == 1536
    assert not s.uses_embedded_database


def test_blank_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")
    assert load_settings().uses_embedded_database


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DB_MAX_CONNECTIONS", "abc", "valid integer"),
        ("DB_MAX_CONNECTIONS", "0", "greater than or equal to 1"),
        ("DB_SSL", "sometimes", "'require', 'prefer' or 'disable'"),
        ("DATABASE_URL", "mysql://x@y/z", "must be a PostgreSQL URL"),
        ("DB_CONNECT_TIMEOUT", "-1", "greater than or equal to 1"),
        ("AGENTRY_LLM_BASE_URL", "localhost:8080", "http://"),
        ("AGENTRY_EMBEDDING_PROVIDER", "cohere", "should match pattern"),
        ("AGENTRY_HNSW_M", "1", "greater than or equal to 2"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message
    assert expected in message
    assert "\n" not in message


def test_cli_reports_bad_setting_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTRY_", "DB_"))}
    env.update(DB_MAX_CONNECTIONS="many", AGENTRY_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "core.cli", "doctor", "--skip-embedding"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: invalid configuration: DB_MAX_CONNECTIONS")


def test_the_data_home_does_not_depend_on_the_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AGENTRY_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    here = load_settings().home_dir
    monkeypatch.chdir(tmp_path)
    assert load_settings().home_dir == here == tmp_path / "me" / ".local" / "share" / "agentry"
