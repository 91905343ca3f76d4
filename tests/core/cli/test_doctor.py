from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from config import Settings, reset_settings
from core.cli.main import app
from core.db import Database, extensions, migrate
from core.db.embedded import ensure_database, server_url
from tests.conftest import fresh_database
from tests.core.mechanic.conftest import make_project
from tests.old_pgserver import start_old, stop_old

runner = CliRunner()


def checks_of(output: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(output)["checks"]}


def test_doctor_passes_on_a_ready_database(db: Database, use_database: Any) -> None:
    use_database(db)
    result = runner.invoke(app, ["doctor", "--json", "--skip-embedding"])
    assert result.exit_code == 0, result.output
    checks = checks_of(result.output)
    assert set(checks) == {
        "database", "pgvector", "hnsw", "migrations", "checkpoints", "pool",
        "squawk", "git", "git identity", "git remote", "pg_dump",
    }  # fmt: skip
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["pg_dump"]["data"]["server_major"] == 18
    assert checks["git remote"]["detail"] == "no push (AGENTRY_GIT_REMOTE unset)"
    assert checks["database"]["data"]["server_version"].startswith("18")
    assert checks["pgvector"]["data"]["iterative_scan"] is True  # embedded pgvector 0.8.5
    assert checks["pgvector"]["warning"] is False
    assert checks["pgvector"]["detail"] == f"pgvector {checks['pgvector']['data']['version']}"


@pytest.mark.slow
def test_doctor_warns_about_an_old_pgvector_and_names_the_fix(
    use_database: Any, tmp_path: Path
) -> None:
    """A server users bring with pgvector 0.6.2: the old pgserver, in this test's folder."""
    server = start_old(tmp_path / "pgdata")
    try:
        ensure_database(server, "old_vector")
        url = server_url(server, "old_vector")
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        use_database(url)
        result = runner.invoke(app, ["doctor", "--json", "--skip-embedding"])
        table = runner.invoke(app, ["doctor", "--skip-embedding"])
    finally:
        stop_old(server)
    vector = checks_of(result.output)["pgvector"]
    assert vector["ok"] is True and vector["warning"] is True  # a warning, not a failure
    assert vector["data"] == {"version": "0.6.2", "available": "0.6.2", "iterative_scan": False}
    detail = vector["detail"]
    assert detail.startswith("pgvector 0.6.2: older than 0.8.2 (CVE-2026-3172")
    assert "no iterative index scans" in detail
    assert "fix: install pgvector 0.8.2 or newer on the server (postgresql-16-pgvector)" in detail
    assert "unset DATABASE_URL" in detail
    assert "WARN" in table.output


def test_the_fix_is_an_extension_update_when_the_server_has_a_newer_pgvector() -> None:
    advice = extensions.version_warning((0, 8, 1), (0, 8, 5), 17)
    assert advice is not None and "CVE-2026-3172" in advice
    assert "iterative" not in advice  # 0.8.1 has them
    assert advice.endswith(
        "fix: the server has 0.8.5: run `ALTER EXTENSION vector UPDATE` in this database"
    )
    assert extensions.version_warning((0, 8, 2), None, 17) is None


def test_doctor_exits_1_and_names_what_is_wrong(
    pg_server: Any, test_settings: Settings, use_database: Any
) -> None:
    database = fresh_database(pg_server, test_settings, "doctor_behind")
    try:
        migrate.downgrade(database.engine, "base", settings=test_settings)
        use_database(database)
        result = runner.invoke(app, ["doctor", "--json", "--skip-embedding"])
    finally:
        database.dispose()
    assert result.exit_code == 1
    checks = checks_of(result.output)
    assert checks["migrations"]["ok"] is False
    assert checks["migrations"]["data"] == {"current": None, "head": migrate.head_revision()}
    assert checks["database"]["ok"] is True


def test_doctor_reports_an_unreachable_database(use_database: Any, tmp_path: Any) -> None:
    use_database(f"postgresql://postgres@/x?host={tmp_path}")  # no server listens there
    result = runner.invoke(app, ["doctor", "--skip-embedding"])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "unreachable" in result.output


def test_doctor_loads_the_embedding_model(db: Database, use_database: Any) -> None:
    use_database(db)
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    embedding = checks_of(result.output)["embedding"]
    assert embedding["ok"] is True
    assert embedding["data"] == {"dims": 384, "runtime": "onnx"}
    assert "onnx runtime" in embedding["detail"]


def test_doctor_says_how_to_fix_what_the_mechanic_needs(
    db: Database, use_database: Any, monkeypatch: Any, tmp_path: Path
) -> None:
    use_database(db)
    project = make_project(tmp_path)
    monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(project))
    monkeypatch.setenv("AGENTRY_GIT_REMOTE", "deploy")
    monkeypatch.setenv("AGENTRY_GIT_REPO", str(tmp_path / "not-a-repo"))
    reset_settings()
    checks = checks_of(runner.invoke(app, ["doctor", "--json", "--skip-embedding"]).output)
    assert checks["git"]["ok"] is False
    assert "is not a git repository (fix: git init" in checks["git"]["detail"]
    monkeypatch.delenv("AGENTRY_GIT_REPO")
    reset_settings()
    result = runner.invoke(app, ["doctor", "--json", "--skip-embedding"])
    assert result.exit_code == 1
    checks = checks_of(result.output)
    assert checks["git"]["ok"] is True and checks["squawk"]["ok"] is True
    assert checks["git remote"]["ok"] is False
    assert (
        "fix: git remote add deploy URL, or unset AGENTRY_GIT_REMOTE"
        in (checks["git remote"]["detail"])
    )
    shutil.rmtree(project / "dynamic")
    checks = checks_of(runner.invoke(app, ["doctor", "--json", "--skip-embedding"]).output)
    assert checks["git"]["ok"] is False
    assert f"missing {project / 'dynamic' / 'schema'}" in checks["git"]["detail"]
