"""The deployment's own repository: where everything the mechanic writes is committed.

``AGENTRY_PROJECT_DIR`` (default ``AGENTRY_HOME/deployment``) is a git repository of the
deployment, never Agentry's source: the package stays read-only, so a non-editable
``pip install`` works and upgrading Agentry keeps every deployment's changes. On first
start it is created and seeded: ``agents/`` (the built-in agents, copied from the
package), ``dynamic/schema/`` (entity models), ``migrations/versions/`` (the mechanic's
revisions, continuing the core history on their own branch) and one initial commit.
Nothing is pushed: the repository has no remote until an operator adds one.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import git

import agents
from core.db.metadata import DYNAMIC_SCHEMA
from core.db.migrate import DEPLOYMENT_VERSIONS
from core.errors import ConfigError

log = logging.getLogger(__name__)

PACKAGED_AGENTS = Path(agents.__file__).resolve().parent
AUTHOR = git.Actor("Agentry Mechanic", "mechanic@agentry.local")
GITIGNORE = "__pycache__/\n*.pyc\n"
README = """\
# Agentry deployment

This repository belongs to one Agentry deployment. The mechanic commits here what it
changes at run time: `agents/` (agent definitions), `dynamic/schema/` (entity models) and
`migrations/versions/` (their Alembic revisions, continuing Agentry's core history). Your
own tool modules go in `tools/`. Nothing is pushed unless AGENTRY_GIT_REMOTE names a
remote of this repository.
"""


def _seed(folder: Path) -> None:
    (folder / DYNAMIC_SCHEMA).mkdir(parents=True)
    (folder / DEPLOYMENT_VERSIONS).mkdir(parents=True)
    (folder / "agents").mkdir()
    for path in sorted(PACKAGED_AGENTS.glob("*.yaml")):
        shutil.copy2(path, folder / "agents" / path.name)
    # Empty folders are not tracked by git: a marker keeps them in every clone.
    for empty in (folder / DYNAMIC_SCHEMA, folder / DEPLOYMENT_VERSIONS):
        (empty / ".gitkeep").write_text("")
    (folder / ".gitignore").write_text(GITIGNORE)
    (folder / "README.md").write_text(README)
    repo = git.Repo.init(folder, initial_branch="main")
    repo.index.add(["."])
    repo.index.commit("Agentry deployment: built-in agents", author=AUTHOR, committer=AUTHOR)
    repo.close()


def ensure_deployment(project_dir: Path) -> bool:
    """Create and seed the deployment repository (AGENTRY_PROJECT_DIR) unless it exists.

    An existing, non-empty folder is left exactly as it is (it may be a repository an
    operator pointed AGENTRY_PROJECT_DIR at). Processes starting together each build a
    seed aside and rename it into place; one rename wins, the others are discarded.

    Returns:
        True when this call created it.

    Raises:
        ConfigError: the folder cannot be created (named, with the reason).
    """
    target = Path(project_dir).expanduser().resolve()
    if target.is_dir() and any(target.iterdir()):
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".deployment-", dir=target.parent))
    except OSError as exc:
        raise ConfigError(
            f"AGENTRY_PROJECT_DIR: cannot create the deployment repository {target} "
            f"({exc.strerror})"
        ) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide it from the operator's group
        _seed(staging)
        try:
            os.rename(staging, target)  # replaces an empty folder; fails on a non-empty one
        except OSError:
            if target.is_dir() and any(target.iterdir()):
                return False  # another process seeded it first
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("deployment repository created at %s", target)
    return True
