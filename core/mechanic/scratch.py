"""Scratch projects: the one helper the mechanic, the benchmarks and the tests share.

The mechanic plans in a throwaway copy of the deployment's ``migrations/versions`` and
``dynamic/schema`` (:func:`scratch_copy`), so the real repository is untouched until
apply. Benchmarks and tests need whole throwaway deployment repositories: seeded as a
first start seeds one (core/mechanic/deployment.py), plus any folders or files they
copy in (:func:`make_project`, :func:`scratch_deployment`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from core.db.metadata import DYNAMIC_SCHEMA
from core.db.migrate import DEPLOYMENT_VERSIONS
from core.mechanic.deployment import ensure_deployment

SHIPPED = Path(__file__).resolve().parents[2]  # the checkout Agentry ships from
SCHEMA_PARTS = (DEPLOYMENT_VERSIONS.as_posix(), DYNAMIC_SCHEMA.as_posix())  # planning needs
RUNTIME_PARTS = ("agents", "tools")  # the shipped agents and tools, the mechanic's included
_ACTOR = git.Actor("Agentry scratch", "scratch@agentry.local")


def populate(dest: Path, parts: Iterable[str], *, source: Path = SHIPPED) -> Path:
    """Copy each part (a folder or a file, relative to ``source``) into ``dest``.

    A part missing from ``source`` becomes an empty folder (a deployment without
    dynamic models has no ``dynamic/schema`` yet). ``__pycache__`` folders are left behind.

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


def make_project(base: Path, parts: Iterable[str] = (), *, source: Path = SHIPPED) -> Path:
    """``base/project``: a fresh deployment repository, with ``parts`` of ``source``
    copied in and committed."""
    project = base / "project"
    ensure_deployment(project)
    parts = tuple(parts)
    if parts:
        populate(project, parts, source=source)
        commit_all(project, "scratch project: " + ", ".join(parts))
    return project


@contextmanager
def scratch_deployment(
    parts: Iterable[str] = (), *, source: Path = SHIPPED, prefix: str = "agentry-scratch-"
) -> Iterator[Path]:
    """:func:`make_project` in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield make_project(Path(tmp), parts, source=source)


@contextmanager
def scratch_copy(
    source: Path, parts: Iterable[str] = SCHEMA_PARTS, *, prefix: str = "agentry-scratch-"
) -> Iterator[Path]:
    """A temporary copy of ``parts`` of ``source`` (no repository), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield populate(Path(tmp) / "project", parts, source=source)
