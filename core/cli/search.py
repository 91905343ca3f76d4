"""``agentry search``: search the index from the terminal (operator view: all users)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.errors import NotFoundError, ValidationFailed


def _metadata(pairs: list[str]) -> dict[str, object]:
    from core.memory.filters import parse_metadata_value

    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValidationFailed(f"--meta: expected key=value (got {pair!r})")
        out[key] = parse_metadata_value(value)
    return out


@edge
def search_command(
    query: str = typer.Argument(..., help="What to look for."),
    mode: str = typer.Option("hybrid", help="vector, keyword, hybrid or recall."),
    k: int = typer.Option(10, "-k", "--k", help="Hits wanted (1-100)."),
    entity_type: str = typer.Option(None, "--type", help="Only this entity type."),
    user: str = typer.Option(None, "--user", help="Only this user's content (email)."),
    meta: list[str] = typer.Option([], "--meta", help="Metadata filter key=value (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the hits as JSON."),
) -> None:
    """Search messages and entities by meaning, keywords, or both."""
    from core.memory.search import search
    from core.memory.service import check_memory

    with cli_database() as (db, settings):
        check_memory(db.engine, settings)
        with db.engine.begin() as conn:
            user_id = None
            if user:
                from sqlalchemy import text

                user_id = conn.execute(
                    text("SELECT id FROM users WHERE email = :e"), {"e": user}
                ).scalar()
                if user_id is None:
                    raise NotFoundError(f"--user: no user {user!r}")
            hits = search(
                conn,
                query,
                user_id=user_id,
                mode=mode,
                k=k,
                entity_type=entity_type,
                metadata=_metadata(meta),
                settings=settings,
            )
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "entity_type": h.entity_type,
                        "entity_id": str(h.entity_id),
                        "snippet": h.snippet,
                        "score": h.score,
                        "rank": h.ranks,
                    }
                    for h in hits
                ]
            )
        )
        return
    table = Table("#", "type", "id", "score", "ranks", "snippet")
    for i, h in enumerate(hits, start=1):
        ranks = " ".join(f"{m}:{r}" for m, r in h.ranks.items())
        table.add_row(
            str(i), h.entity_type, str(h.entity_id)[:8], f"{h.score:.4f}", ranks, h.snippet[:80]
        )
    console.print(table)
