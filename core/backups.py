"""``agentry backup`` and ``agentry restore``: the database and the deployment repository.

A backup is two files with one stem, side by side: ``backup-<UTC stamp>.dump`` (``pg_dump
-Fc`` of the whole database) and ``backup-<stamp>.bundle`` (``git bundle --all`` of the
repository the mechanic commits to). Both are checked before the backup counts as taken
(``pg_restore --list``, ``git bundle verify``) and both are private (0600 in a 0700
folder, :mod:`core.mechanic.backup`). The mechanic's own pre-change dumps share the
folder but not the ``backup-`` prefix, so pruning never touches them: audit rows name
them.

A restore goes into an empty database only (a non-empty one needs ``force``), then
brings the schema to head and checks the vector index: every HNSW index valid, no row
left without its vector.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import git
from sqlalchemy import text

from config import Settings
from core.db.engine import Database
from core.db.private_files import PRIVATE_FILE_MODE, private_folder
from core.errors import ConflictError, MechanicError, ValidationFailed
from core.mechanic.backup import restore_database, write_private_dump

PREFIX = "backup-"
DUMP_SUFFIX = ".dump"
BUNDLE_SUFFIX = ".bundle"

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total), as core/cli/progress.py draws it."""

# Tables, views and sequences of the schemas Agentry writes to. The server's own
# schemas and pgvector's objects do not make a database "not empty".
USER_RELATIONS_SQL = text(
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')"
    " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    " AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'"
)
HNSW_INDEXES_SQL = text(
    "SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
    " WHERE a.amname = 'hnsw' ORDER BY c.relname"
)


@dataclass(frozen=True)
class BackupSet:
    dump: Path
    bundle: Path | None  # None: the project is not a git repository
    pruned: list[Path] = field(default_factory=list)


@dataclass
class RestoreReport:
    revision_before: str | None = None
    revision: str | None = None
    entity_types: list[str] = field(default_factory=list)
    hnsw_indexes: dict[str, bool] = field(default_factory=dict)
    reindexed: list[str] = field(default_factory=list)
    embedded: int = 0
    pending: int = 0
    repository: Path | None = None


def _noop(phase: str, done: int, total: int) -> None:
    return None


def bundle_path(dump: Path) -> Path:
    return dump.with_suffix(BUNDLE_SUFFIX)


def bundle_repository(repo_dir: Path, path: Path) -> Path | None:
    """``git bundle create --all`` of ``repo_dir`` into ``path`` (0600), verified.

    Returns:
        The bundle, or None when ``repo_dir`` is not a git repository.

    Raises:
        MechanicError: git failed, or the bundle does not verify.
    """
    try:
        repo = git.Repo(repo_dir)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    private_folder(path.parent)
    try:
        repo.git.bundle("create", str(path), "--all")
        # git writes a lock file and renames it, so the mode cannot be set beforehand;
        # the 0700 folder keeps others out until the chmod.
        os.chmod(path, PRIVATE_FILE_MODE)
        repo.git.bundle("verify", str(path))
    except git.GitCommandError as exc:
        path.unlink(missing_ok=True)
        raise MechanicError(
            f"git bundle of {repo_dir} failed: {exc.stderr.strip()[:500]}"
        ) from None
    return path


def backup_sets(folder: Path) -> list[Path]:
    """The dumps ``agentry backup`` wrote in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"{PREFIX}*{DUMP_SUFFIX}"))


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups (dump and bundle); returns what went."""
    dumps = backup_sets(folder)
    gone: list[Path] = []
    for dump in dumps[: max(0, len(dumps) - keep)]:
        for path in (dump, bundle_path(dump)):
            if path.exists():
                path.unlink()
                gone.append(path)
    return gone


def take_backup(
    db: Database,
    settings: Settings,
    out: Path | None = None,
    progress: Progress = _noop,
) -> BackupSet:
    """Dump the database, bundle the repository, check both, prune to ``AGENTRY_BACKUP_KEEP``.

    Args:
        db: the database to dump.
        settings: the repository (``AGENTRY_GIT_REPO``, by default ``AGENTRY_PROJECT_DIR``),
            the default folder and how many backups to keep.
        out: the folder (default ``AGENTRY_BACKUP_DIR`` or ``AGENTRY_HOME/backups``).
        progress: called as each step starts and ends.
    """
    folder = private_folder((out or settings.backup_path).expanduser().resolve())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dump = folder / f"{PREFIX}{stamp}{DUMP_SUFFIX}"
    progress("dump and check the database", 0, 1)
    write_private_dump(db, dump)
    progress("dump and check the database", 1, 1)
    progress("bundle and verify the repository", 0, 1)
    try:
        bundle = bundle_repository(settings.git_repo_dir, bundle_path(dump))
    except MechanicError:
        dump.unlink(missing_ok=True)  # half a backup is not one
        raise
    progress("bundle and verify the repository", 1, 1)
    return BackupSet(dump, bundle, prune_backups(folder, settings.backup_keep))


def is_empty(db: Database) -> bool:
    """Whether the database holds no table, view or sequence of its own."""
    with db.engine.connect() as conn:
        return int(conn.execute(USER_RELATIONS_SQL).scalar_one()) == 0


def clone_bundle(bundle: Path, target: Path) -> Path:
    """Clone a backup's repository bundle into ``target`` (which must not hold anything)."""
    if target.exists() and any(target.iterdir()):
        raise ConflictError(f"{target} is not empty: choose a new folder for the repository")
    try:
        git.Repo.clone_from(str(bundle), str(target))
    except git.GitCommandError as exc:
        raise MechanicError(f"cloning {bundle} failed: {exc.stderr.strip()[:500]}") from None
    return target


def _check_index(db: Database, report: RestoreReport) -> None:
    with db.engine.connect() as conn:
        found = {r.name: bool(r.valid) for r in conn.execute(HNSW_INDEXES_SQL)}
    for name, valid in found.items():
        if not valid:
            # An index left invalid (a build that died) is skipped by the planner.
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    text(f'REINDEX INDEX "{name}"')
                )
            report.reindexed.append(name)
            found[name] = True
    report.hnsw_indexes = found


def restore_backup(
    db: Database,
    settings: Settings,
    dump: Path,
    *,
    force: bool = False,
    embed: bool = True,
    repo_target: Path | None = None,
    progress: Progress = _noop,
) -> RestoreReport:
    """Restore a backup into ``db``, then check migrations and the vector index.

    Args:
        db: the target; must be empty unless ``force``.
        settings: migrations and the embedding model.
        dump: the ``.dump`` file (its ``.bundle`` beside it is used for ``repo_target``).
        force: replace whatever ``db`` holds.
        embed: embed rows that wait for their vector (otherwise they are only counted).
        repo_target: clone the repository bundle there as well.
        progress: called as each step starts and ends.

    Raises:
        ValidationFailed: ``dump`` is missing or is not a custom-format archive.
        ConflictError: ``db`` is not empty and ``force`` is not given.
    """
    from core.db import migrate, prepare_database
    from core.mechanic.pgtools import find_tool, run_tool, server_major
    from core.mechanic.restore import restore_entity_types
    from core.memory.drain import drain_pending
    from core.memory.embeddings import get_embedder
    from core.memory.indexer import count_pending
    from core.memory.service import check_memory

    if not dump.is_file():
        raise ValidationFailed(f"no backup file {dump}")
    with db.engine.connect() as conn:
        major = server_major(conn)
    try:
        run_tool([find_tool("pg_restore", major), "--list", str(dump)], "pg_restore --list")
    except MechanicError:
        raise ValidationFailed(
            f"{dump} is not a pg_dump archive (pg_restore --list fails)"
        ) from None
    if repo_target is not None and not bundle_path(dump).is_file():
        raise ValidationFailed(f"no repository bundle {bundle_path(dump)} beside the dump")
    if not force and not is_empty(db):
        raise ConflictError(
            f"{db.display_url} is not empty: restore into an empty database, or pass --force "
            "to replace what it holds"
        )
    report = RestoreReport()
    progress("restore the database", 0, 1)
    restore_database(db, dump)
    progress("restore the database", 1, 1)
    with db.engine.connect() as conn:
        report.revision_before = migrate.current_revision(conn)
    progress("migrate to head", 0, 1)
    prepare_database(db, settings)
    with db.engine.begin() as conn:
        report.revision = migrate.current_revision(conn)
        report.entity_types = restore_entity_types(conn, settings.project_dir)
    progress("migrate to head", 1, 1)
    _check_index(db, report)
    with db.engine.connect() as conn:
        report.pending = count_pending(conn)
    if embed and report.pending:
        check_memory(db.engine, settings)

        def embedded(done: int, total: int) -> None:
            progress("embed pending rows", done, total)

        report.embedded = drain_pending(
            db.engine,
            get_embedder(settings),
            batch_size=settings.embedding_batch_size,
            threads=1,
            progress=embedded,
        )
        with db.engine.connect() as conn:
            report.pending = count_pending(conn)
    if repo_target is not None:
        progress("clone the repository", 0, 1)
        report.repository = clone_bundle(bundle_path(dump), repo_target)
        progress("clone the repository", 1, 1)
    return report
