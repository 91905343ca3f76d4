"""``agentry prune``: checkpoint retention."""

from __future__ import annotations

import json

import typer

from core.cli.database import cli_database
from core.cli.edge import console, edge


@edge
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Report, remove nothing."),
    keep: int = typer.Option(
        None,
        "--keep",
        min=1,
        help="Checkpoints kept per conversation (default AGENTRY_CHECKPOINT_KEEP).",
    ),
    days: int = typer.Option(
        None,
        "--days",
        min=0,
        help="Remove all checkpoints of conversations"
        " deleted longer ago (default AGENTRY_PRUNE_AFTER_DAYS).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Delete threads whose ttl ran out; keep the latest checkpoints (and run events) per
    conversation; drop those of deleted conversations and orphans."""
    from core.protocols.ttl import expire_threads
    from core.runtime.retention import prune_checkpoints

    with cli_database() as (db, settings), db.engine.connect() as conn:
        keep = keep or settings.checkpoint_keep
        days = settings.prune_after_days if days is None else days
        expired = expire_threads(conn)  # threads whose ttl ran out are deleted first
        report = prune_checkpoints(conn, keep=keep, deleted_after_days=days)
        if dry_run:
            conn.rollback()
        else:
            conn.commit()
    if as_json:
        expired_ids = [str(t) for t in expired]
        typer.echo(
            json.dumps({"dry_run": dry_run, "expired_threads": expired_ids, **report.as_dict()})
        )
        return
    verb = "would remove" if dry_run else "removed"
    for expired_id in expired:
        console.print(f"{verb} thread {expired_id}: its ttl ran out", soft_wrap=True)
    for thread in report.deleted_threads:
        console.print(f"{verb} all checkpoints of deleted conversation {thread}", soft_wrap=True)
    for thread in report.orphan_threads:
        console.print(f"{verb} all checkpoints of orphan thread {thread}", soft_wrap=True)
    console.print(
        f"{verb} {report.checkpoints} checkpoints, {report.writes} writes,"
        f" {report.blobs} blobs (keeping {keep} per conversation);"
        f" {report.runs} runs and {report.run_events} run events;"
        f" {report.webhook_deliveries} finished webhook deliveries"
    )
