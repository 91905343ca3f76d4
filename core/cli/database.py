"""The database a CLI command works on: opened from the settings, disposed after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from config import Settings, get_settings
from core.db import Database, open_database


@contextmanager
def cli_database() -> Iterator[tuple[Database, Settings]]:
    """Open the configured database for one command.

    Yields:
        The database and the process settings; the engine is disposed on exit.
    """
    settings = get_settings()
    db = open_database(settings)
    try:
        yield db, settings
    finally:
        db.dispose()
