"""`/docs` renders without internet: every file it loads is served by Agentry itself."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import swagger_ui_bundle

from config import Settings
from core.api.app import create_app
from core.db import Database
from tests.core.protocols.conftest import LiveServer


@pytest.fixture(scope="module")
def server(db: Database, test_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(db, test_settings)) as live:
        yield live


def test_docs_load_only_local_files(server: LiveServer) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # Nothing from another host: no CDN, no fonts, no favicon from elsewhere.
    assert not re.findall(r"""(?:src|href)=["']?(?:https?:)?//""", page.text), page.text
    assets = re.findall(r"""['"](/docs/static/[^'"]+)['"]""", page.text)
    assert {a.rsplit("/", 1)[1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        got = httpx.get(server.url + asset)
        assert got.status_code == 200, asset
        assert len(got.content) > 100, asset
    bundle = httpx.get(f"{server.url}/docs/static/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    # Swagger UI 5 is the first to render OpenAPI 3.1, which is what the app describes.
    assert httpx.get(f"{server.url}/openapi.json").json()["openapi"].startswith("3.1")
    version = re.search(r"swagger-ui-(\d+)\.", str(swagger_ui_bundle.swagger_ui_path))
    assert version is not None and int(version.group(1)) >= 5
    assert httpx.get(f"{server.url}/docs/oauth2-redirect").status_code == 200
    assert httpx.get(f"{server.url}/redoc").status_code == 404  # ReDoc would need a CDN


def test_root_points_to_the_docs(server: LiveServer) -> None:
    as_json = httpx.get(f"{server.url}/")
    assert as_json.status_code == 200
    assert as_json.json() == {
        "name": "Agentry",
        "version": as_json.json()["version"],
        "docs": "/docs",
        "openapi": "/openapi.json",
        "health": "/health",
        "console": "/console",
    }
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html,*/*"})
    assert 'href="/docs"' in page.text and 'href="/console"' in page.text
    assert "text/html" in page.headers["content-type"]
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert "/" not in paths and "/docs" not in paths
