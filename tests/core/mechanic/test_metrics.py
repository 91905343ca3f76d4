"""The mechanic's applies and failures reach agentry_mechanic_applies_total."""

from __future__ import annotations

from pathlib import Path

import git
import pytest

from config import Settings
from core.db import Database
from core.errors import MechanicError
from core.mechanic.apply import apply_change
from core.mechanic.plan import plan_change
from core.mechanic.spec import parse_spec
from core.observability.metrics import REGISTRY
from tests.core.mechanic.conftest import CHARACTER


def applies(outcome: str) -> float:
    found = REGISTRY.get_sample_value("agentry_mechanic_applies_total", {"outcome": outcome})
    return found or 0.0


def test_applies_and_failures_are_counted(
    db: Database, msettings: Settings, project: Path, tmp_path: Path
) -> None:
    applied, failed = applies("applied"), applies("failed")
    change = plan_change(db, msettings, parse_spec(CHARACTER), actor="system")
    apply_change(db, msettings, change["id"], actor="system")
    assert (applies("applied"), applies("failed")) == (applied + 1, failed)

    repo = git.Repo(project)
    repo.create_remote("origin", str(tmp_path / "no-such-remote.git"))
    spec = {
        "action": "add_fields",
        "entity": "character",
        "fields": [{"name": "mood", "type": "text"}],
    }
    try:
        change = plan_change(db, msettings, parse_spec(spec), actor="system")
        with pytest.raises(MechanicError, match="git push failed"):
            apply_change(
                db,
                msettings.model_copy(update={"git_remote": "origin"}),
                change["id"],
                actor="system",
            )
    finally:
        repo.delete_remote(repo.remote("origin"))
    assert (applies("applied"), applies("failed")) == (applied + 1, failed + 1)
