"""What plan and apply need, checked without changing anything (``agentry doctor``).

Each check names what it saw and, when it fails, how to fix it: the mechanic's
failures otherwise surface only in the middle of a plan or an apply.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import Connection

from config import Settings
from core.errors import AgentryError
from core.health import Check
from core.mechanic.pgtools import find_tool, server_major, tool_major

# The client tools backup, restore and the dry run call, in that order.
PG_TOOLS = ("pg_dump", "pg_restore", "psql")


def squawk_check() -> Check:
    """Squawk lints every revision's SQL; without it every plan fails."""
    from core.mechanic.lint import squawk_binary

    try:
        binary = squawk_binary()
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (AgentryError, OSError, subprocess.TimeoutExpired) as exc:
        return Check(
            "squawk",
            False,
            f"{_message(exc)} (fix: pip install squawk-cli, a dependency of agentry)",
        )
    version = (out.stdout or out.stderr).strip()
    if out.returncode != 0:
        return Check("squawk", False, f"{binary} does not run: {version[:200]}")
    return Check("squawk", True, f"{version} ({binary})", {"path": binary})


def git_checks(settings: Settings) -> list[Check]:
    """The git executable, the deployment repository (writable, right branch), its remote."""
    import git

    from core.mechanic.gitops import AUTHOR

    if shutil.which("git") is None:
        missing = "git is not installed (fix: install git, e.g. apt-get install git)"
        return [Check("git", False, missing)]
    where = settings.git_repo_dir
    try:
        repo = git.Repo(where)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return [
            Check(
                "git",
                False,
                f"{where} is not a git repository (fix: git init {where}, or set "
                "AGENTRY_GIT_REPO / AGENTRY_PROJECT_DIR to one)",
            )
        ]
    checks = [_repository_check(repo, settings)]
    checks.append(
        Check(
            "git identity",
            True,
            f"commits as {AUTHOR.name} <{AUTHOR.email}> (set by Agentry: no git config needed)",
            {"name": AUTHOR.name, "email": AUTHOR.email},
        )
    )
    checks.append(_remote_check(repo, settings))
    return checks


def _repository_check(repo: object, settings: Settings) -> Check:
    import git

    assert isinstance(repo, git.Repo)
    root = Path(repo.working_tree_dir or settings.git_repo_dir)
    project = Path(settings.project_dir).resolve()
    # Apply writes here and commits; the index and objects live under the git dir.
    needed = [root, Path(repo.git_dir), project / "migrations" / "versions"]
    needed.append(project / "dynamic" / "schema")
    missing = [str(p) for p in needed if not p.is_dir()]
    if missing:
        return Check(
            "git", False, f"missing {', '.join(missing)} (fix: AGENTRY_PROJECT_DIR must be a "
            "project with migrations/versions and dynamic/schema)"
        )  # fmt: skip
    read_only = [str(p) for p in needed if not os.access(p, os.W_OK)]
    if read_only:
        return Check(
            "git",
            False,
            f"cannot write {', '.join(read_only)} (fix: give this user write access, or set "
            "AGENTRY_GIT_REPO / AGENTRY_PROJECT_DIR to a repository it can write)",
        )
    branch = None if repo.head.is_detached else repo.active_branch.name
    wanted = settings.git_branch
    if wanted and wanted != branch and wanted in repo.heads:
        return Check(
            "git",
            False,
            f"{root} is on {branch!r} but AGENTRY_GIT_BRANCH is {wanted!r} (fix: git -C {root} "
            f"checkout {wanted}, or unset AGENTRY_GIT_BRANCH)",
        )
    target = wanted or branch
    return Check(
        "git", True, f"{root} writable, commits to {target}", {"repo": str(root), "branch": target}
    )


def _remote_check(repo: object, settings: Settings) -> Check:
    import git

    assert isinstance(repo, git.Repo)
    name = settings.git_remote
    if name is None:
        return Check("git remote", True, "no push (AGENTRY_GIT_REMOTE unset)", {"remote": None})
    if name not in [r.name for r in repo.remotes]:
        return Check(
            "git remote",
            False,
            f"AGENTRY_GIT_REMOTE is {name!r} but {repo.working_tree_dir} has no such remote "
            f"(fix: git remote add {name} URL, or unset AGENTRY_GIT_REMOTE)",
        )
    urls = list(repo.remote(name).urls)
    return Check("git remote", True, f"pushes to {name} ({', '.join(urls)})", {"remote": name})


def pg_tools_check(conn: Connection) -> Check:
    """pg_dump, pg_restore and psql at least as new as the server (pg_dump refuses older)."""
    major = server_major(conn)
    found: dict[str, str] = {}
    try:
        for name in PG_TOOLS:
            found[name] = find_tool(name, major)
    except AgentryError as exc:
        return Check(
            "pg_dump",
            False,
            f"{exc.message} (fix: install postgresql-client-{major}, e.g. apt-get install "
            f"postgresql-client-{major}, or put its bin folder on PATH)",
            {"server_major": major, **found},
        )
    version = tool_major(found["pg_dump"])
    return Check(
        "pg_dump",
        True,
        f"pg_dump {version} for server {major} ({found['pg_dump']})",
        {"server_major": major, **found},
    )


def mechanic_checks(settings: Settings, conn: Connection | None) -> list[Check]:
    """Every check of this module; the client tools need the server (``conn``)."""
    checks = [squawk_check(), *git_checks(settings)]
    if conn is None:
        checks.append(Check("pg_dump", False, "not checked: database unreachable"))
    else:
        checks.append(pg_tools_check(conn))
    return checks


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, AgentryError) else str(exc)
