"""``agentry index``: index the backlog of every searchable source, or re-embed everything."""

from __future__ import annotations

import typer

from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.cli.progress import phase_progress


@edge
def index_command(
    reembed_all: bool = typer.Option(
        False,
        "--reembed",
        help="Rebuild every vector with the configured model and AGENTRY_VECTOR_TYPE.",
    ),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=10_000),
) -> None:
    """Index what is not indexed yet (all sources), purge deleted content, embed pending rows.

    With --reembed: embed everything with the configured model (or, when only
    AGENTRY_VECTOR_TYPE changed, cast the stored vectors) into a staging column while
    searches keep using the old vectors, then switch atomically.
    """
    from core.mechanic.live import EntityRegistry
    from core.memory.backlog import run_backlog
    from core.memory.embeddings import get_embedder
    from core.memory.reembed import reembed, type_only
    from core.memory.service import check_memory

    with cli_database() as (db, settings):
        embedder = get_embedder(settings)
        with phase_progress(transient=False) as progress:
            if reembed_all:
                cast = type_only(db.engine, embedder)
                n = reembed(
                    db.engine,
                    db.conninfo,
                    embedder,
                    settings,
                    batch_size=batch_size,
                    progress=progress,
                )
            else:
                check_memory(db.engine, settings)
                # The mechanic's entities are searchable sources too: register them here,
                # as a server does, so rows written by SQL or before an index get indexed.
                EntityRegistry().ensure_loaded(db.engine)
                report = run_backlog(
                    db.engine, embedder, settings, batch_size=batch_size, progress=progress
                )
        if reembed_all and cast:
            console.print(f"moved {n} index rows to {settings.vector_type}; switched")
        elif reembed_all:
            console.print(f"re-embedded {n} index rows with {embedder.model}; switched")
        else:
            indexed = ", ".join(f"{t} {c}" for t, c in report.indexed.items())
            removed = sum(report.removed.values())
            console.print(
                f"indexed: {indexed}; removed {removed} deleted; embedded {report.embedded}"
            )
