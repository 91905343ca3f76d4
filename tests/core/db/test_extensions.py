from __future__ import annotations

import pytest
from sqlalchemy import text

from core.db import Database, extensions
from core.errors import ExtensionMissingError


@pytest.mark.parametrize(
    ("raw", "parsed", "iterative"),
    [("0.6.2", (0, 6, 2), False), ("0.8.0", (0, 8, 0), True), ("0.10.1-dev", (0, 10, 1), True)],
)
def test_versions_parse_and_pick_the_scan_strategy(
    raw: str, parsed: tuple[int, ...], iterative: bool
) -> None:
    assert extensions.parse_version(raw) == parsed
    assert extensions.supports_iterative_scan(parsed) is iterative


def test_embedded_server_has_pgvector(db: Database) -> None:
    with db.engine.connect() as conn:
        version = extensions.installed_version(conn)
    assert version is not None and version >= (0, 6, 0)


def test_server_without_pgvector_gets_a_clear_error(empty_db: Database) -> None:
    with empty_db.engine.connect() as conn:
        # Shadow the catalogue view so this server looks like one without pgvector.
        conn.execute(text("CREATE SCHEMA fake"))
        conn.execute(
            text(
                "CREATE VIEW fake.pg_available_extensions AS SELECT * FROM"
                " pg_catalog.pg_available_extensions WHERE name <> 'vector'"
            )
        )
        conn.execute(text("SET search_path = fake, pg_catalog, public"))
        with pytest.raises(ExtensionMissingError, match="no pgvector extension"):
            extensions.ensure_vector(conn)
        assert extensions.installed_version(conn) is None
        conn.rollback()
