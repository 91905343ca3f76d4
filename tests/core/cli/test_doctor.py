from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from config import Settings, reset_settings
from core.cli.main import app
from core.db import Database, migrate
from tests.conftest import fresh_database
from tests.core.mechanic.conftest import make_project

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
