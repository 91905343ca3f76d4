"""``agentry backup`` / ``agentry restore``: a round trip into a fresh database, private
files, refusal of a non-empty target, keep-last-N pruning."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any

import git
import pytest
from sqlalchemy import Connection, text
from typer.testing import CliRunner

from config import Settings
from core.backups import PREFIX, backup_sets, bundle_path
from core.cli.main import app
from core.db import Database
from core.mechanic.backup import backup_database
from core.memory.embeddings import Embedder, get_embedder
from core.memory.indexer import count_pending, embed_pending, index_document
from core.memory.search import search
from tests.conftest import create_test_user, fresh_database
from tests.core.mechanic.conftest import make_project

runner = CliRunner()
TABLES = ("users", "conversations", "messages", "search_index", "ai_models", "audit_log")
TEXTS = (
    "The lighthouse keeper polishes the great lens every evening",
    "Our quarterly budget meeting moved to Thursday afternoon",
    "Sourdough starter needs flour and water every single day",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def add_message(conn: Connection, user: uuid.UUID, content: str, settings: Settings) -> None:
    conv = conn.execute(
        text(
            "INSERT INTO conversations (session_id, user_id) VALUES (:s, :u) "
            "ON CONFLICT (session_id) DO UPDATE SET session_id = EXCLUDED.session_id RETURNING id"
        ),
        {"s": f"s-{user}", "u": user},
    ).scalar_one()
    mid = conn.execute(
        text(
            "INSERT INTO messages (conversation_id, user_id, role, content) "
            "VALUES (:c, :u, 'user', :t) RETURNING id"
        ),
        {"c": conv, "u": user, "t": content},
    ).scalar_one()
    index_document(
        conn,
        entity_type="message",
        entity_id=mid,
        text=content,
        user_id=user,
        metadata={"conversation_id": str(conv), "role": "user"},
        settings=settings,
    )


def counts(database: Database) -> dict[str, int]:
    with database.engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES
        }


def top_hit(database: Database, user: uuid.UUID, settings: Settings, embedder: Embedder) -> Any:
    with database.engine.begin() as conn:
        hits = search(
            conn,
            "lamp on the coast at night",
            user_id=user,
            mode="vector",
            k=3,
            settings=settings,
            embedder=embedder,
        )
    return hits[0].entity_id, hits[0].snippet


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("backup"))


@pytest.fixture
def env(
    db: Database,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_database: Any,
) -> Path:
    """The CLI's settings: this module's database, the project, a backup folder, keep 2."""
    folder = tmp_path / "backups"
    monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(project))
    monkeypatch.setenv("AGENTRY_BACKUP_DIR", str(folder))
    monkeypatch.setenv("AGENTRY_BACKUP_KEEP", "2")
    use_database(db)
    return folder


@pytest.mark.slow
def test_round_trip_into_a_fresh_database(
    db: Database,
    pg_server: Any,
    test_settings: Settings,
    env: Path,
    tmp_path: Path,
    project: Path,
    use_database: Any,
) -> None:
    embedder = get_embedder(test_settings)
    alice, _ = create_test_user(db, "alice@backup.org")
    create_test_user(db, "bob@backup.org", admin=True)
    with db.engine.begin() as conn:
        for content in TEXTS:
            add_message(conn, alice.id, content, test_settings)
        embed_pending(conn, embedder)
        # One row waits for its vector: the restore embeds it.
        add_message(conn, alice.id, "A row written just before the backup", test_settings)
    old_umask = os.umask(0o022)  # the usual umask: files would be world-readable
    try:
        made = runner.invoke(app, ["backup"])
    finally:
        os.umask(old_umask)
    assert made.exit_code == 0, made.output
    (dump,) = backup_sets(env)
    assert mode(env) == 0o700
    assert mode(dump) == 0o600 and mode(bundle_path(dump)) == 0o600

    target = fresh_database(pg_server, test_settings, "restore_target", template=None)
    try:
        use_database(target)
        clone = tmp_path / "clone"
        restored = runner.invoke(app, ["restore", str(dump), "--repo", str(clone)])
        assert restored.exit_code == 0, restored.output
        assert "(head)" in restored.output and "ix_search_index_embedding_hnsw" in restored.output
        assert "embedded 1 pending row" in restored.output
        assert counts(target) == counts(db)
        with target.engine.connect() as conn:
            assert count_pending(conn) == 0
        with db.engine.begin() as conn:
            embed_pending(conn, embedder)
        assert top_hit(target, alice.id, test_settings, embedder) == top_hit(
            db, alice.id, test_settings, embedder
        )
        assert "lighthouse" in top_hit(target, alice.id, test_settings, embedder)[1]
        assert git.Repo(clone).head.commit.hexsha == git.Repo(project).head.commit.hexsha

        # The target is not empty any more: a second restore is refused in one line...
        again = runner.invoke(app, ["restore", str(dump)])
        assert again.exit_code != 0
        assert "is not empty" in again.output and "--force" in again.output
        assert "Traceback" not in again.output
        # ...unless forced, which replaces what it holds.
        with target.engine.begin() as conn:
            conn.execute(text("DELETE FROM messages"))
        forced = runner.invoke(app, ["restore", str(dump), "--force", "--no-embed"])
        assert forced.exit_code == 0, forced.output
        assert "1 row(s) still wait for their vector" in forced.output
        assert counts(target)["messages"] == counts(db)["messages"]
    finally:
        target.dispose()


def test_keep_last_n_prunes_only_its_own_backups(db: Database, env: Path) -> None:
    mechanic_dump = backup_database(db, env, "change1")  # the mechanic's, named by audit rows
    for _ in range(3):
        result = runner.invoke(app, ["backup"])
        assert result.exit_code == 0, result.output
    kept = backup_sets(env)
    assert len(kept) == 2
    assert sorted(p.name for p in env.glob(f"{PREFIX}*.bundle")) == [
        bundle_path(p).name for p in kept
    ]
    assert mechanic_dump.exists()
    assert "pruned 2 old file(s)" in result.output


def test_mechanic_backups_are_private_in_an_open_folder(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    old_umask = os.umask(0o022)
    try:
        path = backup_database(db, folder, "change2")
    finally:
        os.umask(old_umask)
    assert mode(folder) == 0o700
    assert mode(path) == 0o600


def test_restore_refuses_a_file_that_is_not_a_dump(env: Path, db: Database, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.dump"
    bogus.write_text("not an archive")
    result = runner.invoke(app, ["restore", str(bogus)])
    assert result.exit_code != 0
    assert "is not a pg_dump archive" in result.output
    missing = runner.invoke(app, ["restore", str(tmp_path / "missing.dump")])
    assert missing.exit_code != 0 and "no backup file" in missing.output
