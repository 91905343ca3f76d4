"""``/docs`` that renders offline, and ``GET /`` pointing at it.

FastAPI's default docs page loads Swagger UI from a CDN: without internet it is a blank
page. The same files come from the PyPI package ``swagger-ui-bundle-v2`` (Swagger UI 5,
which renders the OpenAPI 3.1 FastAPI writes) and are served by this process. ReDoc has
no such package and is switched off rather than left blank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

import core

DOCS_URL = "/docs"
STATIC_URL = "/docs/static"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"

INDEX_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Agentry {version}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Agentry {version}</h1>
<ul>
<li><a href="{console}">Web console</a> (sign in with an API key)</li>
<li><a href="{docs}">API documentation</a> (Swagger UI, works offline)</li>
<li><a href="{openapi}">OpenAPI description</a></li>
<li><a href="/health">Health</a></li>
</ul>
</body></html>
"""


def swagger_ui_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


def index(app: FastAPI) -> dict[str, Any]:
    """What ``GET /`` links to (JSON for programs; browsers get the same as a page)."""
    return {
        "name": "Agentry",
        "version": core.__version__,
        "docs": DOCS_URL,
        "openapi": app.openapi_url,
        "health": "/health",
        "console": "/console",
    }


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI's files from the package and the pages that use them.

    The app must be created with ``docs_url=None, redoc_url=None``.
    """
    app.mount(STATIC_URL, StaticFiles(directory=swagger_ui_dir()), name="swagger-ui")

    @app.get(DOCS_URL, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL,
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/", include_in_schema=False)
    def root(request: Request) -> Response:
        links = index(app)
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(INDEX_HTML.format(**links))
        return JSONResponse(links)
