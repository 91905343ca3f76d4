from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from config import Settings, load_settings
from core.api.app import create_app
from core.db import Database, migrate, open_database, prepare_database


def test_healthy_server_answers_200_with_each_part(db: Database, test_settings: Settings) -> None:
    client = TestClient(create_app(db, test_settings))
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True
    assert body["pgvector"]["ok"] is True and body["pgvector"]["version"].startswith("0.")
    assert body["migrations"]["current"] == body["migrations"]["head"] == migrate.head_revision()
    assert set(body["pool"]) == {"max", "in_use", "idle", "overflow"}
    assert body["pool"]["max"] == test_settings.db_max_connections


def test_stopped_database_answers_503_naming_it(tmp_path: Path) -> None:
    from core.db.embedded import start_server

    settings = load_settings(AGENTRY_HOME=str(tmp_path))
    server = start_server(tmp_path / "pgdata")
    database = open_database(settings)
    try:
        prepare_database(database, settings)
        client = TestClient(create_app(database, settings))
        assert client.get("/health").status_code == 200

        server.cleanup()  # stops the server: this process is its only user
        response = client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert "database" in body["failing"]
        assert body["database"]["ok"] is False
        assert body["detail"].startswith("database: unreachable")
    finally:
        database.dispose()


def test_schema_behind_head_answers_503_naming_migrations(
    pg_server: Any, test_settings: Settings
) -> None:
    from tests.conftest import fresh_database

    database = fresh_database(pg_server, test_settings, "health_behind")
    try:
        migrate.downgrade(database.engine, "base", settings=test_settings)
        response = TestClient(create_app(database, test_settings)).get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["failing"] == ["migrations"]
        assert body["migrations"]["current"] is None
        assert "agentry db upgrade" in body["detail"]
    finally:
        database.dispose()


def test_unknown_route_is_a_problem_document(db: Database, test_settings: Settings) -> None:
    response = TestClient(create_app(db, test_settings)).get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 404
