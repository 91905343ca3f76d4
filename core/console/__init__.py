"""The web console at ``/console``: server-side Jinja2 pages with htmx, in the API process.

Each page group is one router module; each calls the REST routes' own functions (and
:mod:`core.registry.access`) with the signed-in user, so a person sees and does in the
console what the API lets them, nothing more. htmx is shipped in ``static/`` (no CDN, no
build step); see the README's *Web console*.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from core.console import audit, conversations, entities, mechanic, registry, search, session
from core.console.web import PREFIX

STATIC_DIR = Path(__file__).parent / "static"


def install_console(app: FastAPI) -> None:
    """Serve the console's pages and static files from ``app``."""
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    for module in (session, conversations, mechanic, audit, search, entities, registry):
        app.include_router(module.router)
