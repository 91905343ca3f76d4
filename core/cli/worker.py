"""``agentry worker``: a process that only runs queued runs (no HTTP)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import typer

from core.cli.database import cli_database
from core.cli.edge import console, edge


@edge
def worker(
    threads: int = typer.Option(
        None, "--threads", min=1, help="Worker threads (default AGENTRY_RUN_WORKERS)."
    ),
) -> None:
    """Run queued Agent Protocol runs of the database (beside or instead of `agentry up`)."""
    # Imported here: `agentry --help` and the other commands need none of the runtime.
    from core.db import prepare_database
    from core.runs import start_runs
    from core.runs.scheduler import start_scheduler
    from core.runs.webhooks import start_webhooks
    from core.runtime.lifecycle import sync_at_start
    from core.runtime.service import AgentRuntime

    logging.basicConfig(level=logging.INFO)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with cli_database() as (db, settings):
        prepare_database(db, settings)
        sync_at_start(db, settings)
        runtime = AgentRuntime(db, settings)
        count = threads or max(settings.run_workers, 1)
        service = start_runs(db, lambda: runtime, settings, workers=count)
        # Crons fire and webhooks go out from workers too.
        scheduler = start_scheduler(db.engine, settings.cron_interval, lambda: runtime)
        webhooks = start_webhooks(db.engine, settings)
        console.print(f"agentry worker: {count} threads on {db.display_url}")
        try:
            stop.wait()
        finally:
            # Runs held now go back to the queue: another process completes them.
            if scheduler is not None:
                scheduler.stop()
            webhooks.stop()
            service.stop()
            runtime.close()
