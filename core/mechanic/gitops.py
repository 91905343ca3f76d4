"""Git for the mechanic: commit what it wrote, revert on rollback, undo on failure."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import git

from config import Settings
from core.errors import ConfigError, ConflictError, MechanicError

AUTHOR = git.Actor("Agentry Mechanic", "mechanic@agentry.local")


def open_repo(settings: Settings) -> git.Repo:
    """The configured repository, on the configured branch.

    A configured branch that does not exist yet is created at HEAD and checked out
    (the working tree stays as it is); one that exists but is not checked out is
    refused, since switching would change the files a running server loads.
    """
    try:
        repo = git.Repo(settings.git_repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ConfigError(
            f"{settings.git_repo_dir} is not a git repository (AGENTRY_GIT_REPO / "
            "AGENTRY_PROJECT_DIR)"
        ) from None
    wanted = settings.git_branch
    if wanted and (repo.head.is_detached or repo.active_branch.name != wanted):
        if wanted in repo.heads:
            raise ConflictError(
                f"the project is on {current_branch(repo)!r} but AGENTRY_GIT_BRANCH is {wanted!r}"
            )
        repo.create_head(wanted).checkout()
    return repo


def current_branch(repo: git.Repo) -> str | None:
    return None if repo.head.is_detached else repo.active_branch.name


def head_sha(repo: git.Repo) -> str | None:
    try:
        return repo.head.commit.hexsha
    except ValueError:  # no commit yet
        return None


def repo_paths(repo: git.Repo, project_dir: Path, rel_paths: list[str]) -> list[str]:
    """Project-relative paths as paths relative to the repository root."""
    root = Path(repo.working_tree_dir or ".").resolve()
    return [str((project_dir.resolve() / p).relative_to(root)) for p in rel_paths]


def ensure_clean(repo: git.Repo, paths: list[str]) -> None:
    """Refuse to work on files someone changed by hand and did not commit."""
    dirty = [p for p in paths if repo.is_dirty(path=p)] if head_sha(repo) else []
    untracked = set(repo.untracked_files) & set(paths)
    if dirty or untracked:
        raise ConflictError(
            f"uncommitted changes in {', '.join(sorted({*dirty, *untracked}))}: "
            "commit or discard them"
        )


def commit(repo: git.Repo, paths: list[str], message: str) -> str:
    """Stage ``paths`` (added, changed or deleted) and commit them as the mechanic."""
    root = Path(repo.working_tree_dir or ".")
    present = [p for p in paths if (root / p).exists()]
    gone = [p for p in paths if not (root / p).exists()]
    if present:
        repo.index.add(present)
    tracked = {item[0] for item in repo.index.entries}
    gone = [p for p in gone if p in tracked]
    if gone:
        repo.index.remove(gone)
    made = repo.index.commit(message, author=AUTHOR, committer=AUTHOR)
    return made.hexsha


def revert(repo: git.Repo, sha: str, message: str) -> str:
    """Revert one commit as the mechanic."""
    try:
        repo.git.revert(sha, "--no-commit")
    except git.GitCommandError as exc:
        raise MechanicError(f"git revert of {sha[:12]} failed: {exc.stderr.strip()}") from exc
    made = repo.index.commit(message, author=AUTHOR, committer=AUTHOR)
    return made.hexsha


def check_remote(repo: git.Repo, settings: Settings) -> None:
    """Refuse early (before anything is changed) when AGENTRY_GIT_REMOTE names no remote."""
    name = settings.git_remote
    if name is not None and name not in [r.name for r in repo.remotes]:
        raise ConfigError(
            f"AGENTRY_GIT_REMOTE is {name!r} but {repo.working_tree_dir} has no such remote: "
            f"git remote add {name} URL, or unset AGENTRY_GIT_REMOTE"
        )


def push(repo: git.Repo, settings: Settings) -> str | None:
    """Push the branch to AGENTRY_GIT_REMOTE; returns its name, or None when unset.

    Only a remote configured for the mechanic is pushed to: every clone has an
    ``origin``, usually one the person running Agentry cannot (and should not) push to.
    """
    name = settings.git_remote
    if name is None:
        return None
    check_remote(repo, settings)
    branch = current_branch(repo)
    try:
        repo.remote(name).push(refspec=f"{branch}:{branch}").raise_if_error()
    except git.GitCommandError as exc:
        raise MechanicError(f"git push to {name} failed: {exc.stderr.strip()[:300]}") from exc
    return name


def restore(repo: git.Repo, previous: str | None, paths: list[str]) -> None:
    """Put HEAD, the index and ``paths`` back as they were at ``previous``."""
    root = Path(repo.working_tree_dir or ".")
    if previous is None:
        return
    if head_sha(repo) != previous:
        repo.git.reset("--mixed", previous)
    else:
        repo.index.reset(commit=previous)
    tree = repo.commit(previous).tree
    for p in paths:
        try:
            blob = tree / p
        except KeyError:
            (root / p).unlink(missing_ok=True)
            continue
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_bytes(blob.data_stream.read())


class Workspace(NamedTuple):
    """The repository a change writes into, checked, and where HEAD was before it."""

    repo: git.Repo
    branch: str | None
    paths: list[str]
    previous: str | None


def open_workspace(settings: Settings, project_dir: Path, rel_paths: list[str]) -> Workspace:
    """Open the deployment repository for a change touching ``rel_paths``: the remote is one
    configured for pushing (or none), and those paths hold no uncommitted edit."""
    repo = open_repo(settings)
    check_remote(repo, settings)
    branch = current_branch(repo)
    paths = repo_paths(repo, project_dir, rel_paths)
    ensure_clean(repo, paths)
    return Workspace(repo, branch, paths, head_sha(repo))
