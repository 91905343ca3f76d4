"""An AGENTRY_HOME made by the old pgserver (PostgreSQL 16) is carried over to 18 at start.

The old data directory is made by pgserver 0.1.4 itself (tests/old_pgserver.py) and holds
a migrated database with a conversation and its messages, vectors under an HNSW index and
a mechanic entity (planned, applied, with a record). Opening the home the normal way
(``open_database`` with DATABASE_URL unset) must back it up, upgrade it and check it — or,
when pg_upgrade cannot, stop with one line and leave the PostgreSQL 16 data as it was.
"""

from __future__ import annotations

import stat
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from config import Settings, load_settings
from core.conversations.messages import NewMessage, store_messages
from core.db import open_database, prepare_database
from core.db.embedded import bin_dir, ensure_database, server_url
from core.db.extensions import installed_version
from core.db.migrate import current_revision, head_revision
from core.errors import DatabaseError
from core.mechanic.apply import apply_change
from core.mechanic.plan import plan_change
from core.mechanic.spec import parse_spec
from core.memory.bulk import BulkRow, bulk_load
from core.memory.filters import SearchFilter
from core.memory.strategy import PlanKind
from core.memory.synthetic import clustered_vectors
from core.memory.vector_query import run_vector_query
from tests.conftest import create_test_user
from tests.core.mechanic.conftest import CHARACTER, make_project, mechanic_settings
from tests.old_pgserver import OLD_PGVECTOR, start_old, stop_old

pytestmark = pytest.mark.slow

DB_NAME = "agentry"
VECTORS = 600
TABLES_SQL = (
    "SELECT schemaname || '.' || tablename FROM pg_tables "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)


def row_counts(conn: Any) -> dict[str, int]:
    names = conn.execute(text(TABLES_SQL)).scalars().all()
    return {n: int(conn.execute(text(f"SELECT count(*) FROM {n}")).scalar_one()) for n in names}


@pytest.fixture(scope="module")
def old_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A home whose pgdata was made by pgserver 0.1.4, filled, then stopped."""
    base = tmp_path_factory.mktemp("upgrade")
    home, project = base / "home", make_project(base)
    server = start_old(home / "pgdata")
    try:
        ensure_database(server, DB_NAME)
        settings = mechanic_settings(
            load_settings(DATABASE_URL=server_url(server, DB_NAME)), project
        )
        db = open_database(settings)
        prepare_database(db, settings)
        owner, _ = create_test_user(db, "carried@over.org")
        conversation = uuid.uuid4()
        with db.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO conversations (id, session_id, user_id) VALUES (:i, :s, :u)"),
                {"i": conversation, "s": f"s-{conversation}", "u": owner.id},
            )
            store_messages(
                conn,
                conversation,
                owner.id,
                [
                    NewMessage("m1", "user", "where did I park the blue bicycle?"),
                    NewMessage("m2", "assistant", "by the library, next to the oak"),
                ],
            )
        vectors = clustered_vectors(VECTORS, seed=5)
        bulk_load(
            db.conninfo,
            (
                BulkRow("doc", uuid.uuid4(), f"doc {i}", vectors[i], "synthetic", owner.id)
                for i in range(VECTORS)
            ),
            settings,
            expected=VECTORS,
        )
        change = plan_change(db, settings, parse_spec(CHARACTER), actor="system")
        apply_change(db, settings, change["id"], actor="system")
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO character (name, backstory) VALUES ('Ada', 'math')"))
        with db.engine.connect() as conn:
            assert installed_version(conn) == OLD_PGVECTOR
            counts = row_counts(conn)
            revision = current_revision(conn)
        db.dispose()
    finally:
        stop_old(server)
    assert (home / "pgdata" / "PG_VERSION").read_text().strip() == "16"
    assert revision == head_revision(settings) == change["revision"]
    yield {
        "home": home,
        "project": project,
        "counts": counts,
        "revision": revision,
        "owner": owner,
        "vectors": vectors,
    }


def home_settings(old_home: dict[str, Any]) -> Settings:
    """The settings a user has after the upgrade: DATABASE_URL unset, the same home."""
    base = load_settings(AGENTRY_HOME=str(old_home["home"]), AGENTRY_DB_NAME=DB_NAME)
    return mechanic_settings(base, old_home["project"])


def test_when_pg_upgrade_refuses_the_data_stays_on_16_and_one_line_says_what_to_run(
    old_home: dict[str, Any],
) -> None:
    pgdata = old_home["home"] / "pgdata"
    # pg_upgrade refuses tables with reg* columns whose OIDs it cannot keep (regproc).
    server = start_old(pgdata)
    try:
        server.psql(
            f"\\c {DB_NAME}\nCREATE TABLE blocker (p regproc); INSERT INTO blocker VALUES ('now');"
        )
    finally:
        stop_old(server)
    with pytest.raises(DatabaseError) as failed:
        open_database(home_settings(old_home))
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"could not upgrade the embedded PostgreSQL 16 data in {pgdata}")
    assert "pg_upgrade failed" in message and "the data is unchanged" in message
    assert "`agentry up`" in message and "pg_restore" in message
    # Untouched: still PostgreSQL 16, every row there, no half-made directory beside it.
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"
    assert [p.name for p in old_home["home"].iterdir()] == ["pgdata"]
    assert list(home_settings(old_home).backup_path.glob("pg16-to-pg18-*/agentry.dump"))
    server = start_old(pgdata)
    try:
        out = server.psql(f"\\c {DB_NAME}\nSELECT count(*) FROM messages; DROP TABLE blocker;")
        assert f" {old_home['counts']['public.messages']}\n" in out
    finally:
        stop_old(server)


def test_the_old_home_is_backed_up_upgraded_and_checked(old_home: dict[str, Any]) -> None:
    home, pgdata = old_home["home"], old_home["home"] / "pgdata"
    settings = home_settings(old_home)
    db = open_database(settings)  # what `agentry up` does first
    try:
        assert (pgdata / "PG_VERSION").read_text().strip() == "18"
        with db.engine.connect() as conn:
            assert conn.execute(text("SHOW server_version_num")).scalar_one().startswith("18")
            version = installed_version(conn)
            assert version is not None and version >= (0, 8, 5)  # extension updated too
            assert row_counts(conn) == old_home["counts"]
            assert current_revision(conn) == old_home["revision"] == head_revision(settings)
            assert conn.execute(text("SELECT name FROM character")).scalar_one() == "Ada"
            assert conn.execute(
                text(
                    "SELECT bool_and(indisvalid) FROM pg_index i JOIN pg_class c "
                    "ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                    "WHERE a.amname = 'hnsw'"
                )
            ).scalar_one()
        prepare_database(db, settings)  # at head already: nothing to do, no error
        with db.engine.begin() as conn:
            flt = SearchFilter(user_id=old_home["owner"].id)
            low = load_settings(AGENTRY_SEARCH_EXACT_THRESHOLD="0")
            run = run_vector_query(conn, old_home["vectors"][3], flt, limit=5, settings=low)
            assert run.plans[0].kind is PlanKind.iterative and len(run.rows) == 5
            assert run.rows[0].content == "doc 3"
    finally:
        db.dispose()
        assert db.server is not None
        db.server.cleanup()
    # The old directory is gone only now that the check passed; the dumps stay.
    assert [p.name for p in home.iterdir()] == ["pgdata"]
    dumps = sorted(settings.backup_path.glob("pg16-to-pg18-*/agentry.dump"))  # AGENTRY_BACKUP_DIR
    assert dumps, list(settings.backup_path.rglob("*"))
    # They hold every user's messages: the owner's alone (core/db/private_files.py).
    assert stat.S_IMODE(dumps[-1].stat().st_mode) == 0o600
    assert stat.S_IMODE(dumps[-1].parent.stat().st_mode) == 0o700
    listing = subprocess.run(
        [str(bin_dir() / "pg_restore"), "--list", str(dumps[-1])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE public character" in listing and "TABLE public messages" in listing
