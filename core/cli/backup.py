"""``agentry backup`` and ``agentry restore``."""

from __future__ import annotations

from pathlib import Path

import typer

from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.cli.progress import phase_progress


@edge
def backup_command(
    out: Path = typer.Option(
        None, "--out", help="Folder for the backup (default AGENTRY_BACKUP_DIR)."
    ),
) -> None:
    """Back up the database (pg_dump -Fc) and the deployment repository (git bundle),
    check both, keep the newest AGENTRY_BACKUP_KEEP; files are readable by you only."""
    from core.backups import take_backup

    with cli_database() as (db, settings), phase_progress(transient=False) as progress:
        made = take_backup(db, settings, out, progress)
    console.print(f"database: {made.dump}", highlight=False)
    if made.bundle is not None:
        console.print(f"repository: {made.bundle}", highlight=False)
    else:
        console.print(f"repository: {settings.git_repo_dir} is not a git repository; not bundled")
    if made.pruned:
        console.print(f"pruned {len(made.pruned)} old file(s) (AGENTRY_BACKUP_KEEP)")


@edge
def restore_command(
    file: Path = typer.Argument(..., help="The backup's .dump file."),
    force: bool = typer.Option(
        False, "--force", help="Replace what the database holds (default: refuse unless empty)."
    ),
    repo: Path = typer.Option(
        None, "--repo", help="Also clone the backup's repository bundle into this new folder."
    ),
    no_embed: bool = typer.Option(
        False, "--no-embed", help="Only count rows waiting for their vector; do not embed them."
    ),
) -> None:
    """Restore a backup into an empty database, bring it to the head migration and check
    the vector index (valid HNSW, pending vectors embedded)."""
    from core.backups import restore_backup

    with cli_database(create=True) as (db, settings), phase_progress(transient=False) as progress:
        report = restore_backup(
            db,
            settings,
            file.expanduser().resolve(),
            force=force,
            embed=not no_embed,
            repo_target=repo.expanduser().resolve() if repo else None,
            progress=progress,
        )
    console.print(f"restored {file} into {db.display_url}", highlight=False)
    if report.revision_before != report.revision:
        console.print(f"migrated {report.revision_before} -> {report.revision} (head)")
    else:
        console.print(f"schema at revision {report.revision} (head)")
    if report.entity_types:
        console.print(f"entity types restored: {', '.join(report.entity_types)}")
    indexes = ", ".join(report.hnsw_indexes) or "none"
    console.print(f"HNSW indexes valid: {indexes}")
    if report.reindexed:
        console.print(f"rebuilt invalid indexes: {', '.join(report.reindexed)}")
    if report.embedded:
        console.print(f"embedded {report.embedded} pending row(s)")
    if report.pending:
        console.print(
            f"[yellow]{report.pending} row(s) still wait for their vector:[/] run `agentry index`"
        )
    if report.repository is not None:
        console.print(f"repository cloned into {report.repository}", highlight=False)
