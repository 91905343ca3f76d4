"""Scratch copies of a project: the one helper the mechanic, the benchmarks and the tests share.

The mechanic plans in a throwaway copy of ``migrations/`` and ``dynamic/schema`` so the
real working tree is untouched until apply; the benchmarks and the tests build whole
throwaway projects (a git repository with the migrations, the shipped agents and tools)
the same way, so what they exercise is what a deployment holds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from core.db.metadata import DYNAMIC_SCHEMA

SHIPPED = Path(__file__).resolve().parents[2]  # the checkout Agentry ships from
SCHEMA_PARTS = ("migrations", DYNAMIC_SCHEMA.as_posix())  # what planning a change needs
RUNTIME_PARTS = ("agents", "tools")  # what running agents needs
_ACTOR = git.Actor("Agentry scratch", "scratch@agentry.local")


def populate(dest: Path, parts: Iterable[str], *, source: Path = SHIPPED) -> Path:
    """Copy each part (a folder or a file, relative to ``source``) into ``dest``.

    A part missing from ``source`` becomes an empty folder (a project without dynamic
    models has no ``dynamic/schema`` yet). ``__pycache__`` folders are left behind.

    Returns:
        ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for part in parts:
        src, out = source / part, dest / part
        if src.is_dir():
            shutil.copytree(
                src, out, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        elif src.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
        else:
            out.mkdir(parents=True, exist_ok=True)
    return dest


def commit_all(project: Path, message: str) -> git.Repo:
    """Commit everything in ``project``, making it a git repository (branch main) first."""
    try:
        repo = git.Repo(project)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        repo = git.Repo.init(project, initial_branch="main")
    repo.git.add(A=True)
    repo.index.commit(message, author=_ACTOR, committer=_ACTOR)
    return repo


def make_project(
    base: Path, parts: Iterable[str] = SCHEMA_PARTS, *, source: Path = SHIPPED
) -> Path:
    """``base/project``: a git repository holding ``parts`` copied from ``source``."""
    project = populate(base / "project", parts, source=source)
    commit_all(project, "scratch project")
    return project


@contextmanager
def scratch_project(
    source: Path,
    parts: Iterable[str] = SCHEMA_PARTS,
    *,
    repository: bool = False,
    prefix: str = "agentry-scratch-",
) -> Iterator[Path]:
    """A temporary copy of ``parts`` of ``source``, removed afterwards.

    Args:
        source: the project to copy from (usually ``settings.project_dir``).
        parts: folders or files to copy.
        repository: make it a git repository with one commit (for applying changes).
        prefix: the temporary folder's name prefix.

    Yields:
        The copy's root folder.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        if repository:
            yield make_project(Path(tmp), parts, source=source)
        else:
            yield populate(Path(tmp) / "project", parts, source=source)
