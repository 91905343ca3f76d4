"""The dry run catches revisions that do not round-trip; backups restore what they hold."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from config import Settings
from core.db import Database
from core.db.migrate import head_revision
from core.mechanic.backup import backup_database, restore_database
from core.mechanic.dryrun import dry_run
from core.mechanic.generate import scratch_project

# The core schema's newest revision: the hand-written one follows it.
HEAD = head_revision()

REVISION = '''"""hand-written"""
from alembic import op

revision = "mbad"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("{up}")


def downgrade() -> None:
    {down}
'''


def shadow_count(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_shadow\\_%'")
            ).scalar_one()
        )


def write(scratch: Settings, up: str, down: str) -> None:
    path = Path(scratch.project_dir) / "migrations" / "versions" / "mbad_hand_written.py"
    path.write_text(REVISION.format(up=up, down=down, head=HEAD))


def test_a_downgrade_that_does_not_undo_is_caught(db: Database, msettings: Settings) -> None:
    before = shadow_count(db)
    with scratch_project(msettings) as scratch:
        write(scratch, "CREATE TABLE IF NOT EXISTS leftover (id int)", "pass")
        result = dry_run(db, msettings, scratch, "mbad", HEAD)
    assert not result.ok
    assert any("after downgrade" in d and "leftover" in d for d in result.differences)
    assert shadow_count(db) == before  # the shadow database is always dropped
    with db.engine.connect() as conn:  # and the live database never saw the change
        assert conn.execute(text("SELECT to_regclass('leftover')")).scalar() is None


def test_a_failing_upgrade_is_reported(db: Database, msettings: Settings) -> None:
    with scratch_project(msettings) as scratch:
        write(scratch, "ALTER TABLE no_such_table ADD COLUMN x int", 'op.execute("SELECT 1")')
        result = dry_run(db, msettings, scratch, "mbad", HEAD)
    assert not result.ok and "no_such_table" in (result.error or "")


def test_a_good_revision_round_trips(db: Database, msettings: Settings) -> None:
    with scratch_project(msettings) as scratch:
        write(scratch, "CREATE TABLE fine (id int)", 'op.execute("DROP TABLE fine")')
        result = dry_run(db, msettings, scratch, "mbad", HEAD)
    assert result.ok, result
    assert result.steps[-1] == "schema snapshots equal"


def test_backup_is_checked_and_restores_the_database(
    db: Database, msettings: Settings, tmp_path: Path
) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE keep_me (v text)"))
        conn.execute(text("INSERT INTO keep_me VALUES ('precious')"))
    path = backup_database(db, tmp_path / "backups", "test")
    assert path.exists() and path.stat().st_size > 0 and path.name.endswith("-test.dump")
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM keep_me"))
        conn.execute(text("CREATE TABLE junk (id int)"))
    restore_database(db, path)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT v FROM keep_me")).scalars().all() == ["precious"]
        assert conn.execute(text("SELECT to_regclass('junk')")).scalar() is None
