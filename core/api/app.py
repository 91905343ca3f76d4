"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

import core
from config import Settings, get_settings
from core.api.docs import install_docs
from core.api.nul import RejectNulMiddleware
from core.api.openapi import install_openapi
from core.api.problems import install_problem_handlers
from core.api.routes import (
    agents,
    audit,
    conversations,
    entities,
    health,
    limits,
    mechanic,
    metrics,
    models,
    openai_compat,
    tools,
    users,
)
from core.api.routes import credentials as credential_routes
from core.api.routes import imports as import_routes
from core.api.routes import memory as memory_routes
from core.api.routes import search as search_routes
from core.api.routes.protocol import assistants as protocol_assistants
from core.api.routes.protocol import crons as protocol_crons
from core.api.routes.protocol import info as protocol_info
from core.api.routes.protocol import runs as protocol_runs
from core.api.routes.protocol import store as protocol_store
from core.api.routes.protocol import threads as protocol_threads
from core.api.strict import strict_parsing
from core.console import install_console
from core.db.engine import Database, open_database
from core.limits.body import BodyLimitMiddleware
from core.mechanic.deployment import ensure_deployment
from core.mechanic.live import EntityRegistry, start_live_entities, untrack
from core.mechanic.tools import entity_tool_provider
from core.memory.heap import keep_freed_memory
from core.memory.service import start_memory
from core.observability.http import MetricsMiddleware
from core.observability.tracing import start_tracing
from core.runs import start_runs
from core.runs.scheduler import start_scheduler
from core.runs.webhooks import start_webhooks
from core.runtime import lifecycle as runtime_lifecycle
from core.runtime.tool_providers import register_tool_provider, unregister_tool_provider


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
    keep_freed_memory(settings.malloc_keep_mb)  # search's arrays reuse warm pages
    tracing = start_tracing(settings)  # None (nothing imported) without an OTLP endpoint

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = db is None
        app.state.db = db if db is not None else open_database(settings)
        if tracing is not None:
            tracing.instrument_engine(app.state.db.engine)
        # Vector memory: refuse to serve with a mismatched embedding model; embed in background.
        memory_worker = start_memory(app.state.db.engine, settings)
        ensure_deployment(settings.project_dir)  # first start on a database migrated elsewhere
        listener = start_live_entities(app.state.db, app.state.entities, settings.project_dir)
        entity_tools = register_tool_provider(
            entity_tool_provider(app.state.db, app.state.entities)
        )
        runtime_lifecycle.start(app)
        # Durable runs: this process listens for run notifications and runs queued runs.
        app.state.runs = start_runs(
            app.state.db, lambda: runtime_lifecycle.get_runtime(app), settings
        )
        # Crons fire and webhooks go out from every process (rows are claimed, never shared).
        scheduler = start_scheduler(
            app.state.db.engine, settings.cron_interval, lambda: runtime_lifecycle.get_runtime(app)
        )
        webhooks = start_webhooks(app.state.db.engine, settings)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()
            webhooks.stop()
            app.state.runs.stop()
            runtime_lifecycle.stop(app)
            unregister_tool_provider(entity_tools)
            listener.stop()
            untrack(app.state.entities)
            if memory_worker is not None:
                memory_worker.stop()
            if owned:
                app.state.db.dispose()
            if tracing is not None:
                tracing.flush()

    app = FastAPI(
        title="Agentry",
        version=core.__version__,
        summary="Self-evolving agent platform with vector memory",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs from a package: no CDN, works offline
        redoc_url=None,
        dependencies=[Depends(strict_parsing)],
    )
    install_docs(app)
    app.state.settings = settings
    app.state.entities = EntityRegistry()
    if db is not None:
        app.state.db = db
    install_problem_handlers(app)
    app.add_middleware(RejectNulMiddleware)
    # The metrics middleware is added last, so outermost: a 413 is still counted.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=settings.max_body_bytes,
        limits={"/v1/import": settings.max_import_bytes},
    )
    if settings.metrics_enabled:
        app.add_middleware(MetricsMiddleware)
        app.include_router(metrics.router)
    if tracing is not None:
        tracing.instrument_app(app)
    install_openapi(app)
    app.include_router(health.router)
    app.include_router(users.router)
    app.include_router(limits.router)
    app.include_router(agents.router)
    app.include_router(tools.router)
    app.include_router(models.router)
    app.include_router(conversations.router)
    app.include_router(entities.router)
    app.include_router(mechanic.router)
    app.include_router(audit.router)
    app.include_router(search_routes.router)
    app.include_router(import_routes.router)
    app.include_router(memory_routes.router)
    app.include_router(credential_routes.router)
    # The LangGraph Agent Protocol (langgraph_sdk) and the OpenAI-compatible chat API.
    app.include_router(protocol_info.router)
    app.include_router(protocol_assistants.router)
    app.include_router(protocol_threads.router)
    app.include_router(protocol_crons.router)
    app.include_router(protocol_runs.router)
    app.include_router(protocol_store.router)
    app.include_router(openai_compat.router)
    app.include_router(openai_compat.prefixed)
    # The web console: HTML pages over the same route functions, at /console.
    install_console(app)
    return app
