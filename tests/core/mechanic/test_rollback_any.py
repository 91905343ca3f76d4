"""Roll back any change: refused while a later change depends on it, otherwise reverted with
the history kept whole; rolled-back changes apply again."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import git
import pytest
from sqlalchemy import text

from config import Settings
from core.db import Database
from core.db.migrate import current_revision, head_revision
from core.errors import ConflictError
from core.mechanic import conversation, registry
from core.mechanic.apply import apply_change
from core.mechanic.plan import plan_change
from core.mechanic.rollback import rollback_change
from core.mechanic.spec import parse_spec
from core.runtime.context import TurnContext
from tests.conftest import create_test_user

AUTHOR = {
    "action": "add_entity",
    "entity": "author",
    "fields": [{"name": "name", "type": "string", "max_length": 100}],
}
SHELF = {
    "action": "add_entity",
    "entity": "shelf",
    "fields": [{"name": "label", "type": "string", "max_length": 50}],
}
BIO = {"action": "add_fields", "entity": "author", "fields": [{"name": "bio", "type": "text"}]}
LAMP = {"action": "add_entity", "entity": "lamp", "fields": [{"name": "watts", "type": "integer"}]}


def applied(db: Database, settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    planned = plan_change(db, settings, parse_spec(spec), actor="test")
    return apply_change(db, settings, planned["id"], actor="test")


def heads_agree(db: Database, settings: Settings) -> str:
    head = head_revision(settings)
    with db.engine.connect() as conn:
        assert current_revision(conn) == head
    return str(head)


def status(db: Database, entity: str) -> tuple[str, list[str]]:
    with db.engine.connect() as conn:
        reg = registry.load_entities(conn)[entity]
    return reg.status, [f.name for f in reg.defn.fields]


def test_older_changes_roll_back_unless_later_ones_depend_on_them(
    db: Database, msettings: Settings, project: Path
) -> None:
    author = applied(db, msettings, AUTHOR)
    shelf = applied(db, msettings, SHELF)
    bio = applied(db, msettings, BIO)
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO shelf (label) VALUES ('top')"))
        conn.execute(text("INSERT INTO author (name, bio) VALUES ('Ann', 'wrote')"))

    with pytest.raises(ConflictError, match="later changes depend on change") as refused:
        rollback_change(db, msettings, author["id"], actor="test")
    assert (
        str(bio["id"]) in refused.value.message and "add fields to author" in refused.value.message
    )
    assert status(db, "author") == ("active", ["name", "bio"])
    # In a conversation the mechanic says so without asking the person for a doomed rollback.
    admin, _ = create_test_user(db, "rollback-admin@example.com", admin=True)
    turn = TurnContext(db, msettings, admin, uuid.uuid4(), admin.id)
    said = conversation.rollback(turn, str(author["id"]))
    assert "cannot be rolled back" in said and str(bio["id"]) in said

    # shelf is older than bio but nothing builds on it
    head = heads_agree(db, msettings)
    rolled = rollback_change(db, msettings, shelf["id"], actor="test")
    assert rolled["status"] == "rolled_back"
    assert heads_agree(db, msettings) == head == bio["revision"]  # the history is whole
    assert not (project / "dynamic/schema/shelf.py").exists()
    revision_file = next(f["path"] for f in shelf["plan"]["files"] if "versions" in f["path"])
    assert (project / revision_file).exists()
    repo = git.Repo(project)
    assert repo.head.commit.message.startswith("Roll back: add entity shelf")
    assert not repo.is_dirty(untracked_files=True)
    assert status(db, "shelf")[0] == "retired"
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT label FROM shelf")).scalars().all() == ["top"]

    # later changes still plan and apply on top
    applied(db, msettings, LAMP)
    heads_agree(db, msettings)
    again = apply_change(db, msettings, shelf["id"], actor="test")
    assert again["status"] == "applied" and status(db, "shelf")[0] == "active"
    heads_agree(db, msettings)

    # an older add_fields rolls back to the fields before it; then its base can go too
    rollback_change(db, msettings, bio["id"], actor="test")
    assert status(db, "author") == ("active", ["name"])
    assert "bio" not in (project / "dynamic/schema/author.py").read_text()
    rollback_change(db, msettings, author["id"], actor="test")
    assert status(db, "author")[0] == "retired"
    with db.engine.connect() as conn:  # data kept throughout
        assert conn.execute(text("SELECT bio FROM author")).scalars().all() == ["wrote"]
    heads_agree(db, msettings)
    assert not repo.is_dirty(untracked_files=True)
