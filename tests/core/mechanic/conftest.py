"""A real project directory (git repository) for the mechanic to write into and commit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import git
import pytest

from config import Settings

ROOT = Path(__file__).resolve().parents[3]

CHARACTER = {
    "action": "add_entity",
    "entity": "character",
    "fields": [
        {"name": "name", "type": "string", "max_length": 200, "required": True, "searchable": True},
        {"name": "role", "type": "string", "max_length": 100},
        {"name": "age", "type": "integer"},
        {"name": "backstory", "type": "text", "searchable": True},
        {"name": "traits", "type": "string_list"},
    ],
}


def make_project(base: Path) -> Path:
    """A git repository holding copies of migrations/, dynamic/schema and agents/mechanic.yaml."""
    project = base / "project"
    shutil.copytree(
        ROOT / "migrations", project / "migrations", ignore=shutil.ignore_patterns("__pycache__")
    )
    (project / "dynamic" / "schema").mkdir(parents=True)
    shutil.copy(ROOT / "dynamic" / "schema" / "__init__.py", project / "dynamic" / "schema")
    (project / "agents").mkdir()
    shutil.copy(ROOT / "agents" / "mechanic.yaml", project / "agents")
    repo = git.Repo.init(project, initial_branch="main")
    repo.git.add(A=True)
    actor = git.Actor("Test", "test@example.com")
    repo.index.commit("initial project", author=actor, committer=actor)
    return project


def mechanic_settings(base: Settings, project: Path, **extra: Any) -> Settings:
    update = {
        "project_dir": project,
        "backup_dir": project.parent / "backups",
        "mechanic_lock_wait": 2.0,
        **extra,
    }
    return base.model_copy(update=update)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("mechanic"))


@pytest.fixture(scope="module")
def msettings(test_settings: Settings, project: Path) -> Settings:
    return mechanic_settings(test_settings, project)
