"""Repository and branch are configurable: a project inside a bigger repo, a named branch."""

from __future__ import annotations

import shutil
from pathlib import Path

import git

from config import Settings
from core.db import Database
from core.mechanic.apply import apply_change
from core.mechanic.plan import plan_change
from core.mechanic.spec import parse_spec
from tests.core.mechanic.conftest import CHARACTER, make_project, mechanic_settings


def test_commits_go_to_the_configured_repo_and_branch(
    db: Database, test_settings: Settings, tmp_path: Path
) -> None:
    outer = tmp_path / "monorepo"
    project = make_project(outer)  # outer/project is its own repo: make the outer one own it
    shutil.rmtree(project / ".git")
    repo = git.Repo.init(outer, initial_branch="main")
    repo.git.add(A=True)
    me = git.Actor("Dev", "dev@example.com")
    repo.index.commit("monorepo", author=me, committer=me)
    settings = mechanic_settings(
        test_settings,
        project,
        git_repo=outer,
        git_branch="schema-changes",
        backup_dir=tmp_path / "backups",
    )
    change = plan_change(db, settings, parse_spec(CHARACTER), actor="system")
    applied = apply_change(db, settings, change["id"], actor="system")
    assert repo.active_branch.name == "schema-changes"
    assert repo.heads["schema-changes"].commit.hexsha == applied["git_commit"]
    assert repo.heads["main"].commit.message == "monorepo"
    assert sorted(repo.head.commit.stats.files) == sorted(
        f"project/{f['path']}" for f in change["plan"]["files"]
    )
    assert repo.git.status("--porcelain") == ""
