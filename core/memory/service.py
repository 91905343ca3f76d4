"""Start-up of vector memory in a server process: check the embedding space, start the worker."""

from __future__ import annotations

from sqlalchemy import Engine

from config import Settings
from core.memory.space import Space, ensure_space
from core.memory.worker import EmbeddingWorker, start_worker


def check_memory(engine: Engine, settings: Settings) -> Space:
    """Fail fast when the configured embedding model/dimensions differ from the index.

    Raises:
        EmbeddingMismatchError: with the fix (``agentry index --reembed``) in the message.
    """
    with engine.begin() as conn:
        return ensure_space(conn, settings)


def start_memory(engine: Engine, settings: Settings) -> EmbeddingWorker | None:
    """Check the space, then start the background embedding worker (if enabled)."""
    check_memory(engine, settings)
    return start_worker(engine, settings)
