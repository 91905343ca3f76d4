"""``agentry import``: bring old conversations in (legacy tables or JSON Lines), then index them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from config import Settings
from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.errors import ValidationFailed

if TYPE_CHECKING:
    from core.conversations.importing import ImportConversation, ImportReport
    from core.db import Database

app = typer.Typer(help="Import conversation histories.", no_args_is_help=True)


def _bar(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


def _run(
    db: Database,
    settings: Settings,
    items: Iterable[tuple[str, ImportConversation]],
    report: ImportReport,
    *,
    total: int | None,
    user: str | None,
    embed: bool,
    quiet: bool,
) -> None:
    # Imported here: `agentry --help` must not load the search stack.
    from core.conversations.importing import import_conversations, resolve_user
    from core.memory.drain import drain_pending
    from core.memory.embeddings import get_embedder

    with _bar(quiet) as bar:
        task = bar.add_task("conversations", total=total)
        with db.engine.begin() as conn:
            owner = resolve_user(conn, user) if user else None
            import_conversations(
                conn,
                items,
                report,
                default_user=owner,
                progress=lambda done: bar.update(task, completed=done),
            )
        if embed and report.indexed:
            embedding = bar.add_task("embedding", total=report.indexed)
            drain_pending(
                db.engine,
                get_embedder(settings),
                batch_size=256,
                progress=lambda done, total: bar.update(embedding, completed=done, total=total),
            )


def _print(report: ImportReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_json()))
        return
    console.print(
        f"imported {report.imported} conversations ({report.messages} messages, "
        f"{report.switches} agent switches); {report.unchanged} already there; "
        f"{len(report.skipped)} skipped"
    )
    for s in report.skipped:
        console.print(f"  skipped {s['where']}: {s['reason']}", highlight=False)


_EMBED = typer.Option(True, "--embed/--no-embed", help="Embed the new index rows now.")
_JSON = typer.Option(False, "--json", help="Print the report as JSON.")


@app.command("sessions")
@edge
def sessions(
    source: str = typer.Option(..., "--from", help="The legacy database's URL."),
    user: str = typer.Option(..., "--user", help="Owner of the imported sessions (email or id)."),
    embed: bool = _EMBED,
    as_json: bool = _JSON,
) -> None:
    """Import the legacy sessions / agent_contexts tables (read only) for one user."""
    from core.conversations.importing import ImportReport
    from core.conversations.legacy import count_sessions, read_legacy

    report = ImportReport()
    total = count_sessions(source) if not as_json else None
    with cli_database() as (db, settings):
        items = read_legacy(source, user, report)
        _run(db, settings, items, report, total=total, user=user, embed=embed, quiet=as_json)
    _print(report, as_json)


@app.command("conversations")
@edge
def conversations(
    file: Path = typer.Argument(..., help="JSON Lines file, one conversation per line."),
    user: str = typer.Option(
        None, "--user", help="Owner of lines that name no user (email or id)."
    ),
    embed: bool = _EMBED,
    as_json: bool = _JSON,
) -> None:
    """Import conversations from JSON Lines (format: README, "Importing history")."""
    if not file.is_file():
        raise ValidationFailed(f"FILE: no such file {file}")
    from core.conversations.importing import ImportReport, parse_jsonl

    with file.open(encoding="utf-8") as fh:
        total = sum(1 for line in fh if line.strip())
    report = ImportReport()
    with cli_database() as (db, settings), file.open(encoding="utf-8") as fh:
        _run(
            db,
            settings,
            parse_jsonl(fh, report),
            report,
            total=total,
            user=user,
            embed=embed,
            quiet=as_json,
        )
    _print(report, as_json)
