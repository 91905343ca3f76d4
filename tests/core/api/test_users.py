from __future__ import annotations

from fastapi.testclient import TestClient

from config import Settings
from core.api.app import create_app
from core.db import Database
from tests.conftest import auth, create_test_user


def test_missing_or_bad_key_is_401(db: Database, test_settings: Settings) -> None:
    client = TestClient(create_app(db, test_settings))
    for headers in ({}, auth("agk_wrong"), {"Authorization": "Basic abc"}):
        response = client.get("/v1/me", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"


def test_user_is_403_on_admin_routes_and_admin_is_served(
    db: Database, test_settings: Settings
) -> None:
    client = TestClient(create_app(db, test_settings))
    _, user_key = create_test_user(db, "plain@example.org")
    _, admin_key = create_test_user(db, "boss@example.org", admin=True)

    assert client.get("/v1/me", headers=auth(user_key)).json()["role"] == "user"
    forbidden = client.get("/v1/users", headers=auth(user_key))
    assert forbidden.status_code == 403
    assert forbidden.json()["detail"] == "this route is for admins"
    assert (
        client.post(
            "/v1/users", json={"email": "x@example.org"}, headers=auth(user_key)
        ).status_code
        == 403
    )

    created = client.post("/v1/users", json={"email": "new@example.org"}, headers=auth(admin_key))
    assert created.status_code == 201
    new_key = created.json()["api_key"]
    assert client.get("/v1/me", headers=auth(new_key)).json()["email"] == "new@example.org"
    emails = {u["email"] for u in client.get("/v1/users", headers=auth(admin_key)).json()}
    assert {"plain@example.org", "boss@example.org", "new@example.org"} <= emails


def test_bad_body_is_a_422_problem_naming_the_field(db: Database, test_settings: Settings) -> None:
    client = TestClient(create_app(db, test_settings))
    _, admin_key = create_test_user(db, "boss2@example.org", admin=True)
    response = client.post("/v1/users", json={"name": "no email"}, headers=auth(admin_key))
    assert response.status_code == 422
    assert "email" in response.json()["detail"]
    conflict = client.post(
        "/v1/users", json={"email": "boss2@example.org"}, headers=auth(admin_key)
    )
    assert conflict.status_code == 409
