"""Starting and stopping the runtime with the HTTP app."""

from __future__ import annotations

import logging
import threading

from fastapi import FastAPI

from config import Settings
from core.db.engine import Database
from core.errors import AgentryError
from core.protocols.thread_ops import TtlSweeper
from core.registry.sync import sync_registry
from core.runtime.router import register_default_model
from core.runtime.server_view import record_server_view
from core.runtime.service import AgentRuntime

log = logging.getLogger(__name__)
_lock = threading.Lock()


def sync_at_start(db: Database, settings: Settings) -> None:
    """Registries from the files and the default model; a bad file is logged, not fatal
    (the registry keeps its last good state and the server still serves)."""
    try:
        with db.engine.begin() as conn:
            report = sync_registry(conn, settings.project_dir)
        if report.changed:
            log.info("registry synced: %s", report.changes)
    except AgentryError as exc:
        log.error("registry not synced, keeping the previous state: %s", exc)
    with db.engine.begin() as conn:
        register_default_model(conn, settings)
        record_server_view(conn, settings)  # what `agentry models list` judges from


def get_runtime(app: FastAPI) -> AgentRuntime:
    """The app's runtime, created on first use (also when the lifespan did not run)."""
    runtime: AgentRuntime | None = getattr(app.state, "runtime", None)
    if runtime is None:
        with _lock:
            runtime = getattr(app.state, "runtime", None)
            if runtime is None:
                runtime = AgentRuntime(app.state.db, app.state.settings)
                app.state.runtime = runtime
    return runtime


def start(app: FastAPI) -> None:
    sync_at_start(app.state.db, app.state.settings)
    get_runtime(app)
    app.state.ttl_sweeper = TtlSweeper(app.state.db)
    app.state.ttl_sweeper.start()


def stop(app: FastAPI) -> None:
    sweeper: TtlSweeper | None = getattr(app.state, "ttl_sweeper", None)
    if sweeper is not None:
        sweeper.stop()
    runtime: AgentRuntime | None = getattr(app.state, "runtime", None)
    if runtime is not None:
        runtime.close()
        app.state.runtime = None
