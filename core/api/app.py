"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import core
from config import Settings, get_settings
from core.api.problems import install_problem_handlers
from core.api.routes import health, users
from core.api.routes import search as search_routes
from core.db.engine import Database, open_database
from core.memory.service import start_memory


def create_app(db: Database | None = None, settings: Settings | None = None) -> FastAPI:
    """Build the API.

    Args:
        db: an open database; when None, one is opened from the settings at
            start-up and disposed at shutdown (``uvicorn core.api.app:create_app --factory``).
        settings: defaults to the process settings.

    Returns:
        The application.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = db is None
        app.state.db = db if db is not None else open_database(settings)
        # Vector memory: refuse to serve with a mismatched embedding model; embed in background.
        memory_worker = start_memory(app.state.db.engine, settings)
        try:
            yield
        finally:
            if memory_worker is not None:
                memory_worker.stop()
            if owned:
                app.state.db.dispose()

    app = FastAPI(
        title="Agentry",
        version=core.__version__,
        summary="Self-evolving agent platform with vector memory",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if db is not None:
        app.state.db = db
    install_problem_handlers(app)
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(search_routes.router)
    return app
