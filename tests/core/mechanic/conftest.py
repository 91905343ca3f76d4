"""A real project directory (git repository) for the mechanic to write into and commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config import Settings
from core.mechanic import scratch

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
    """A deployment repository as a first start creates it (agents/, dynamic/schema,
    migrations/versions, one commit), in a temporary folder."""
    return scratch.make_project(base)


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
