"""A deployment repository holding mechanic entities serves them on a fresh database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings, reset_settings
from core.api.app import create_app
from core.cli.main import app
from core.db import Database, prepare_database
from core.mechanic.apply import apply_change
from core.mechanic.plan import plan_change
from core.mechanic.restore import read_definition, restore_entity_types
from core.mechanic.spec import parse_spec
from core.memory.search import keyword_search
from tests.conftest import auth, create_test_user, fresh_database
from tests.core.mechanic.conftest import CHARACTER
from tests.core.protocols.conftest import LiveServer

ADA = text(
    "INSERT INTO character (name, backstory) VALUES ('Ada', 'wrote the first program') RETURNING id"
)


def test_entities_come_back_on_a_fresh_database(
    db: Database,
    msettings: Settings,
    project: Path,
    pg_server: Any,
    test_settings: Settings,
    use_database: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The deployment repository gets an entity (model file, revision, commit) ...
    change = plan_change(db, msettings, parse_spec(CHARACTER), actor="system")
    apply_change(db, msettings, change["id"], actor="system")
    defn = read_definition(project / "dynamic" / "schema" / "character.py")
    assert defn is not None and defn.name == "character" and defn.searchable

    # ... and a new database is made from it: the revisions create the table.
    fresh = fresh_database(pg_server, test_settings, "restored")
    try:
        prepare_database(fresh, msettings)
        with fresh.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM entity_types")).scalar_one() == 0
            ada = conn.execute(ADA).scalar_one()  # a row written by SQL, never indexed
        _, key = create_test_user(fresh, "admin@example.com", admin=True)

        with LiveServer(create_app(fresh, msettings)) as server:
            listed = httpx.get(f"{server.url}/v1/entities/character", headers=auth(key))
            assert listed.status_code == 200, listed.text
            assert [r["name"] for r in listed.json()["items"]] == ["Ada"]
            types = httpx.get(f"{server.url}/v1/entities", headers=auth(key)).json()
            assert "character" in str(types)
        with fresh.engine.connect() as conn:
            assert restore_entity_types(conn, project) == []  # known now: nothing to do

        # `agentry index` indexes the mechanic's entities too, SQL-written rows included.
        use_database(fresh)
        monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(project))
        reset_settings()
        result = CliRunner().invoke(app, ["index"])
        assert result.exit_code == 0, result.output
        assert "character 1" in result.output
        with fresh.engine.connect() as conn:
            hits = keyword_search(conn, "first program", user_id=None)
        assert [(h.entity_type, h.entity_id) for h in hits] == [("character", ada)]
    finally:
        fresh.dispose()


def test_db_upgrade_restores_entity_types(
    msettings: Settings,
    project: Path,
    pg_server: Any,
    test_settings: Settings,
    use_database: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (project / "dynamic" / "schema" / "character.py").exists()  # from the test above
    fresh = fresh_database(pg_server, test_settings, "restored_cli")
    try:
        use_database(fresh)
        monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(project))
        reset_settings()
        result = CliRunner().invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        assert "entity types restored from the project: character" in result.output
        with fresh.engine.connect() as conn:
            status = conn.execute(
                text("SELECT status FROM entity_types WHERE name = 'character'")
            ).scalar_one()
        assert status == "active"
    finally:
        fresh.dispose()
