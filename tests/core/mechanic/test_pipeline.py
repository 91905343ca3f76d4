"""Plan -> apply -> rollback -> re-apply on a real database and a real git repository."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import git
import pytest
from sqlalchemy import text

from config import Settings
from core.db import Database
from core.db.migrate import MIGRATION_LOCK_KEY, current_revision, head_revision
from core.errors import ConfigError, ConflictError, MechanicError, PolicyViolation
from core.mechanic import entities
from core.mechanic.apply import apply_change
from core.mechanic.live import EntityRegistry
from core.mechanic.pgtools import find_tool  # the embedded server is PostgreSQL 18
from core.mechanic.plan import plan_change
from core.mechanic.rollback import rollback_change
from core.mechanic.spec import parse_spec
from core.memory.search import keyword_search
from core.memory.sources import source_for
from tests.conftest import create_test_user
from tests.core.mechanic.conftest import CHARACTER

HEAD = head_revision()  # the core head: the deployment's first revision branches off it

LOCATION = {
    "action": "add_entity",
    "entity": "location",
    "fields": [
        {"name": "title", "type": "string", "max_length": 100, "required": True},
        {"name": "notes", "type": "text", "searchable": True},
    ],
}


def plan(db: Database, settings: Settings, spec: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return plan_change(db, settings, parse_spec(spec), actor="system", **kw)


def tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname='public'")
            ).scalars()
        )


def columns(db: Database, table: str) -> set[str]:
    with db.engine.connect() as conn:
        return set(
            conn.execute(
                text("SELECT column_name FROM information_schema.columns WHERE table_name = :t"),
                {"t": table},
            ).scalars()
        )


def revision_of(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return current_revision(conn)


def audit_rows(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(text("SELECT * FROM audit_log ORDER BY created_at")).mappings()
        ]


def clean(project: Path) -> bool:
    return git.Repo(project).git.status("--porcelain") == ""


def test_plan_shows_everything_and_changes_nothing(
    db: Database, msettings: Settings, project: Path
) -> None:
    head = git.Repo(project).head.commit.hexsha
    # Drift on a core table and a table nobody declared: autogenerate must not see either.
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE users ADD COLUMN stray integer"))
        conn.execute(text("CREATE TABLE someone_elses (id int primary key)"))
    try:
        change = plan(db, msettings, CHARACTER, instruction="keep track of characters")
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("ALTER TABLE users DROP COLUMN stray"))
            conn.execute(text("DROP TABLE someone_elses"))
    p = change["plan"]
    assert change["status"] == "planned"
    # The deployment's first revision branches off the core head, labelled "deployment".
    assert change["revision"].startswith("m") and change["down_revision"] == HEAD
    assert "branch_labels: str | Sequence[str] | None = ('deployment',)" in p["files"][1]["content"]
    assert [f["path"] for f in p["files"]] == [
        "dynamic/schema/character.py",
        f"migrations/versions/{change['revision']}_add_entity_character_name_role_age_.py",
    ]
    assert "+def define(metadata: MetaData) -> Table:" in p["diff"]
    assert "add entity character (name, role, age, backstory, traits)" in p["files"][1]["content"]
    assert "CREATE TABLE character" in p["sql"]
    assert "TABLE users" not in p["sql"] and "ON users" not in p["sql"]
    assert "checkpoint" not in p["sql"]
    assert "stray" not in p["sql"] and "someone_elses" not in p["sql"]
    assert p["lint"] == {"ok": True, "findings": []}
    assert p["dry_run"]["ok"] and "schema snapshots equal" in p["dry_run"]["steps"]
    # Nothing written, committed or migrated yet.
    assert not (project / "dynamic/schema/character.py").exists()
    assert clean(project) and git.Repo(project).head.commit.hexsha == head
    assert "character" not in tables(db)
    assert revision_of(db) == HEAD


def test_apply_migrates_commits_backs_up_and_records(
    db: Database, msettings: Settings, project: Path
) -> None:
    change = plan(db, msettings, CHARACTER, instruction="keep track of characters")
    applied = apply_change(db, msettings, change["id"], actor="user:admin")
    assert applied["status"] == "applied"
    assert "character" in tables(db)
    assert revision_of(db) == change["revision"]
    model = project / "dynamic/schema/character.py"
    assert model.read_text() == change["plan"]["files"][0]["content"]
    repo = git.Repo(project)
    commit = repo.head.commit
    assert commit.hexsha == applied["git_commit"]
    assert commit.author.name == "Agentry Mechanic"
    assert commit.message.startswith("keep track of characters")
    assert f"Revision: {change['revision']}" in commit.message
    assert sorted(commit.stats.files) == sorted(f["path"] for f in change["plan"]["files"])
    assert clean(project)
    backup = Path(applied["backup_path"])
    listing = subprocess.run(
        [find_tool("pg_restore", 18), "--list", str(backup)], capture_output=True, text=True
    ).stdout
    assert "TABLE public users" in listing
    row = audit_rows(db)[-1]
    assert (row["action"], row["actor"], row["status"]) == (
        "schema_change",
        "user:admin",
        "succeeded",
    )
    assert row["git_commit"] == commit.hexsha and row["git_branch"] == "main"
    details = row["details"]
    assert details["instruction"] == "keep track of characters"
    assert details["revision"] == change["revision"]
    assert details["files_changed"] == [f["path"] for f in change["plan"]["files"]]
    assert details["lint"]["ok"] is True and details["backup"] == str(backup)
    with db.engine.connect() as conn:
        reg = (
            conn.execute(text("SELECT * FROM entity_types WHERE name='character'")).mappings().one()
        )
    assert reg["status"] == "active" and reg["searchable_fields"] == ["name", "backstory"]
    assert reg["revision"] == change["revision"]
    with pytest.raises(ConflictError, match="already applied"):
        apply_change(db, msettings, change["id"], actor="system")


def test_required_field_without_default_on_existing_table_is_refused(
    db: Database, msettings: Settings
) -> None:
    spec = {
        "action": "add_fields",
        "entity": "character",
        "fields": [{"name": "level", "type": "integer", "required": True}],
    }
    with pytest.raises(PolicyViolation) as err:
        plan(db, msettings, spec)
    assert "[not-null-without-default]" in err.value.message
    assert "give it a default" in err.value.message
    assert "squawk:adding-required-field" in err.value.message
    assert err.value.status == 422


def test_index_on_existing_table_is_built_concurrently(db: Database, msettings: Settings) -> None:
    change = plan(
        db, msettings, {"action": "add_index", "entity": "character", "index": {"fields": ["role"]}}
    )
    revision_text = change["plan"]["files"][1]["content"]
    assert "with op.get_context().autocommit_block():" in revision_text
    assert "postgresql_concurrently=True" in revision_text
    assert (
        "CREATE INDEX CONCURRENTLY ix_character_role ON character (role)" in change["plan"]["sql"]
    )
    apply_change(db, msettings, change["id"], actor="system")
    with db.engine.connect() as conn:
        assert conn.execute(
            text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_character_role'")
        ).scalar()


MOOD = {"action": "add_fields", "entity": "character", "fields": [{"name": "mood", "type": "text"}]}


def test_failed_push_leaves_database_tree_and_head_as_before(
    db: Database, msettings: Settings, project: Path, tmp_path: Path
) -> None:
    repo = git.Repo(project)
    head, rev = repo.head.commit.hexsha, revision_of(db)
    repo.create_remote("origin", str(tmp_path / "no-such-remote.git"))
    pushing = msettings.model_copy(update={"git_remote": "origin"})
    try:
        change = plan(db, msettings, MOOD)
        with pytest.raises(MechanicError, match="git push failed"):
            apply_change(db, pushing, change["id"], actor="system")
    finally:
        repo.delete_remote(repo.remote("origin"))
    assert "mood" not in columns(db, "character")
    assert revision_of(db) == rev
    assert repo.head.commit.hexsha == head and clean(project)
    row = audit_rows(db)[-1]
    assert (row["action"], row["status"]) == ("schema_change", "failed")
    assert "git push failed" in row["details"]["error"]
    assert any("downgraded" in step for step in row["details"]["undo"])
    # Fixed the remote: the same change applies.
    applied = apply_change(db, msettings, change["id"], actor="system")
    assert applied["status"] == "applied" and "mood" in columns(db, "character")


def test_push_goes_to_a_configured_remote(
    db: Database, msettings: Settings, project: Path, tmp_path: Path
) -> None:
    remote = git.Repo.init(tmp_path / "remote.git", bare=True)
    repo = git.Repo(project)
    repo.create_remote("origin", str(tmp_path / "remote.git"))
    try:
        change = plan(
            db,
            msettings,
            {
                "action": "add_fields",
                "entity": "character",
                "fields": [{"name": "motto", "type": "text"}],
            },
        )
        pushing = msettings.model_copy(update={"git_remote": "origin"})
        applied = apply_change(db, pushing, change["id"], actor="system")
    finally:
        repo.delete_remote(repo.remote("origin"))
    assert remote.commit("main").hexsha == applied["git_commit"]


def test_a_remote_is_pushed_to_only_when_configured(
    db: Database, msettings: Settings, project: Path, tmp_path: Path
) -> None:
    # Every clone has an origin; unless AGENTRY_GIT_REMOTE names it, the mechanic leaves it be.
    assert msettings.git_remote is None
    remote = git.Repo.init(tmp_path / "origin.git", bare=True)
    repo = git.Repo(project)
    repo.create_remote("origin", str(tmp_path / "origin.git"))
    try:
        change = plan(
            db, msettings, {"action": "add_fields", "entity": "character",
                            "fields": [{"name": "quirk", "type": "text"}]},
        )  # fmt: skip
        applied = apply_change(db, msettings, change["id"], actor="system")
        assert applied["status"] == "applied"
        assert not remote.heads  # nothing was pushed
        row = audit_rows(db)[-1]
        assert row["details"]["pushed_to"] is None
        # A configured remote that does not exist is refused before anything changes.
        missing = msettings.model_copy(update={"git_remote": "deploy"})
        head = repo.head.commit.hexsha
        with pytest.raises(ConfigError, match="AGENTRY_GIT_REMOTE is 'deploy'"):
            rollback_change(db, missing, change["id"], actor="system")
        assert repo.head.commit.hexsha == head and clean(project)
    finally:
        repo.delete_remote(repo.remote("origin"))


def test_lock_timeout_fails_cleanly_when_a_table_is_busy(
    db: Database, msettings: Settings, project: Path
) -> None:
    quick = msettings.model_copy(update={"mechanic_lock_timeout": 0.3})
    change = plan(
        db,
        quick,
        {
            "action": "add_fields",
            "entity": "character",
            "fields": [{"name": "height", "type": "numeric"}],
        },
    )
    head, rev = git.Repo(project).head.commit.hexsha, revision_of(db)
    blocker = db.engine.connect()
    blocker.execute(text("LOCK TABLE character IN ACCESS SHARE MODE"))
    started = time.perf_counter()
    try:
        with pytest.raises(MechanicError, match=r"upgrade failed.*lock timeout"):
            apply_change(db, quick, change["id"], actor="system")
    finally:
        blocker.rollback()
        blocker.close()
    assert time.perf_counter() - started < 10
    assert "height" not in columns(db, "character")
    assert revision_of(db) == rev
    assert git.Repo(project).head.commit.hexsha == head and clean(project)
    assert not any(project.glob(f"migrations/versions/{change['revision']}_*"))
    row = audit_rows(db)[-1]
    assert row["status"] == "failed" and "lock timeout" in row["details"]["error"]


def test_a_concurrent_apply_waits_with_a_bound_then_fails_clearly(
    db: Database, msettings: Settings
) -> None:
    change = plan(db, msettings, LOCATION)
    holder = db.engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
    holder.commit()
    try:
        waiting = msettings.model_copy(update={"mechanic_lock_wait": 1.0})
        started = time.perf_counter()
        with pytest.raises(
            ConflictError, match="another schema change is being applied; waited 1 s"
        ):
            apply_change(db, waiting, change["id"], actor="system")
        assert 1.0 <= time.perf_counter() - started < 8.0  # bounded, with room for a busy machine
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
        holder.commit()
        holder.close()
    # With the lock free, the same change applies.
    assert apply_change(db, msettings, change["id"], actor="system")["status"] == "applied"


def test_rollback_retires_keeps_data_reverts_and_reapply_brings_it_back(
    db: Database, msettings: Settings, project: Path
) -> None:
    owner, _ = create_test_user(db, "owner@example.com")
    live = EntityRegistry()
    with db.engine.begin() as conn:
        live.refresh(conn)
        record = entities.create(
            conn,
            live.get("location"),
            {"title": "Harbour", "notes": "foggy lighthouse"},
            user_id=owner.id,
        )
    with db.engine.connect() as conn:
        assert [h.entity_id for h in keyword_search(conn, "lighthouse", user_id=owner.id)] == [
            record["id"]
        ]
        changes = conn.execute(
            text(
                "SELECT id, entity, revision, git_commit FROM mechanic_changes "
                "WHERE status='applied' ORDER BY applied_at"
            )
        ).all()
    location_change = changes[-1]
    assert location_change.entity == "location"
    assert source_for("location") is not None
    # An older change that later ones build on is refused, naming them.
    with pytest.raises(ConflictError, match="later changes depend on change"):
        rollback_change(db, msettings, changes[0].id, actor="system")
    applied = git.Repo(project).head.commit.hexsha
    rolled = rollback_change(db, msettings, location_change.id, actor="user:admin")
    assert rolled["status"] == "rolled_back"
    repo = git.Repo(project)
    assert repo.head.commit.author.name == "Agentry Mechanic"
    assert repo.head.commit.message.startswith("Roll back: add entity location")
    assert repo.head.commit.parents[0].hexsha == applied and clean(project)
    assert not (project / "dynamic/schema/location.py").exists()
    assert revision_of(db) == rolled["down_revision"]
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT title FROM location")).scalars().all() == ["Harbour"]
        assert (
            conn.execute(text("SELECT status FROM entity_types WHERE name='location'")).scalar()
            == "retired"
        )
        assert keyword_search(conn, "lighthouse", user_id=owner.id) == []
        live.refresh(conn)
    with pytest.raises(Exception, match="no entity type 'location'"):
        live.get("location")
    assert source_for("location") is None  # no longer a search source
    row = audit_rows(db)[-1]
    assert (row["action"], row["status"], row["actor"]) == ("rollback", "succeeded", "user:admin")
    assert row["details"]["reverted_commit"] == location_change.git_commit == applied

    back = apply_change(db, msettings, location_change.id, actor="system")
    assert back["status"] == "applied" and back["revision"] != location_change.revision
    assert (project / "dynamic/schema/location.py").exists() and clean(project)
    with db.engine.begin() as conn:
        live.refresh(conn)
        again = entities.get(conn, live.get("location"), record["id"], user_id=owner.id)
        assert again["title"] == "Harbour"
        assert [h.entity_id for h in keyword_search(conn, "lighthouse", user_id=owner.id)] == [
            record["id"]
        ]


def test_retire_entity_hides_it_and_keeps_its_table(
    db: Database, msettings: Settings, project: Path
) -> None:
    change = plan(db, msettings, {"action": "retire_entity", "entity": "location"})
    assert change["plan"]["files"][0] == {"path": "dynamic/schema/location.py", "content": None}
    assert "DROP" not in change["plan"]["sql"].upper()
    apply_change(db, msettings, change["id"], actor="system")
    assert not (project / "dynamic/schema/location.py").exists() and clean(project)
    assert "location" in tables(db)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM location")).scalar() == 1
        assert (
            conn.execute(text("SELECT status FROM entity_types WHERE name='location'")).scalar()
            == "retired"
        )


def test_a_stale_plan_is_refused(db: Database, msettings: Settings) -> None:
    first = plan(
        db,
        msettings,
        {
            "action": "add_fields",
            "entity": "character",
            "fields": [{"name": "eyes", "type": "text"}],
        },
    )
    second = plan(
        db,
        msettings,
        {
            "action": "add_fields",
            "entity": "character",
            "fields": [{"name": "hair", "type": "text"}],
        },
    )
    apply_change(db, msettings, first["id"], actor="system")
    with pytest.raises(ConflictError, match="stale plan"):
        apply_change(db, msettings, second["id"], actor="system")
    assert "hair" not in columns(db, "character")


def test_hand_edited_files_are_not_overwritten(
    db: Database, msettings: Settings, project: Path
) -> None:
    change = plan(
        db,
        msettings,
        {
            "action": "add_fields",
            "entity": "character",
            "fields": [{"name": "voice", "type": "text"}],
        },
    )
    model = project / "dynamic/schema/character.py"
    original = model.read_text()
    model.write_text(original + "# my local edit\n")
    try:
        with pytest.raises(
            ConflictError, match=r"uncommitted changes in dynamic/schema/character\.py"
        ):
            apply_change(db, msettings, change["id"], actor="system")
        assert model.read_text().endswith("# my local edit\n")
        assert "voice" not in columns(db, "character")
    finally:
        model.write_text(original)
    assert clean(project)


def test_a_half_built_concurrent_index_is_undone_by_restoring_the_backup(
    db: Database, msettings: Settings, project: Path
) -> None:
    spec = {
        "action": "add_index",
        "entity": "character",
        "index": {"fields": ["name", "role"], "unique": True},
    }
    change = plan(db, msettings, spec)
    assert change["plan"]["dry_run"]["ok"]
    # Duplicates written after the plan checked the data: apply is the last line of defence.
    with db.engine.begin() as conn:
        for _ in range(2):
            conn.execute(text("INSERT INTO character (name, role) VALUES ('Twin', 'double')"))
    head, rev = git.Repo(project).head.commit.hexsha, revision_of(db)
    # The data, not the server, is at fault: 409 with the database's reason, not a 500.
    with pytest.raises(ConflictError, match="could not create unique index") as refused:
        apply_change(db, msettings, change["id"], actor="system")
    assert refused.value.status == 409
    assert "existing data does not allow it" in refused.value.message
    with db.engine.connect() as conn:
        # CREATE INDEX CONCURRENTLY leaves an INVALID index behind when it fails: gone.
        assert not conn.execute(
            text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_character_name_role'")
        ).scalar()
        twins = conn.execute(text("SELECT count(*) FROM character WHERE name = 'Twin'")).scalar()
    assert twins == 2  # the data is as it was
    assert revision_of(db) == rev
    assert git.Repo(project).head.commit.hexsha == head and clean(project)
    row = audit_rows(db)[-1]
    assert row["status"] == "failed"
    assert any("restored" in step for step in row["details"]["undo"])


def test_a_table_the_mechanic_does_not_own_is_never_adopted(
    db: Database, msettings: Settings
) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE gadget (id int primary key, secret text)"))
    spec = {"action": "add_entity", "entity": "gadget", "fields": [{"name": "x", "type": "text"}]}
    with pytest.raises(ConflictError, match="a table named 'gadget' already exists"):
        plan(db, msettings, spec)
    assert columns(db, "gadget") == {"id", "secret"}


def test_rolled_back_fields_stay_hidden_with_their_data_and_come_back(
    db: Database, msettings: Settings, project: Path
) -> None:
    nick = plan(
        db,
        msettings,
        {
            "action": "add_fields",
            "entity": "character",
            "fields": [{"name": "nickname", "type": "text"}],
        },
    )
    apply_change(db, msettings, nick["id"], actor="system")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO character (name, nickname) VALUES ('Al', 'Big Al')"))
    rollback_change(db, msettings, nick["id"], actor="system")
    live = EntityRegistry()
    with db.engine.connect() as conn:
        live.refresh(conn)
    assert live.get("character").defn.field("nickname") is None  # hidden from API and tools
    assert "nickname" in columns(db, "character")  # the data is kept
    # A later change must not propose dropping the hidden column.
    weight = plan(
        db,
        msettings,
        {
            "action": "add_fields",
            "entity": "character",
            "fields": [{"name": "weight", "type": "numeric"}],
        },
    )
    assert "nickname" not in weight["plan"]["files"][1]["content"]
    apply_change(db, msettings, weight["id"], actor="system")
    back = apply_change(db, msettings, nick["id"], actor="system")
    assert back["status"] == "applied"
    with db.engine.connect() as conn:
        live.refresh(conn)
        assert live.get("character").defn.field("nickname") is not None
        assert (
            conn.execute(text("SELECT nickname FROM character WHERE name = 'Al'")).scalar()
            == "Big Al"
        )
    assert clean(project)


def test_a_failed_rollback_changes_nothing(
    db: Database, msettings: Settings, project: Path, tmp_path: Path
) -> None:
    with db.engine.connect() as conn:
        latest = conn.execute(
            text("SELECT id, revision FROM mechanic_changes WHERE status='applied' "
                 "ORDER BY applied_at DESC LIMIT 1")
        ).one()  # fmt: skip
    repo = git.Repo(project)
    head = repo.head.commit.hexsha
    repo.create_remote("origin", str(tmp_path / "gone.git"))
    pushing = msettings.model_copy(update={"git_remote": "origin"})
    try:
        with pytest.raises(MechanicError, match="git push"):
            rollback_change(db, pushing, latest.id, actor="system")
    finally:
        repo.delete_remote(repo.remote("origin"))
    assert repo.head.commit.hexsha == head and clean(project)
    assert revision_of(db) == latest.revision
    with db.engine.connect() as conn:
        status = conn.execute(
            text("SELECT status FROM mechanic_changes WHERE id = :i"), {"i": latest.id}
        ).scalar()
    assert status == "applied"
    row = audit_rows(db)[-1]
    assert (row["action"], row["status"]) == ("rollback", "failed")
    assert "git push" in row["details"]["error"]
