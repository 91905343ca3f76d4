"""``agentry bench protocols``: a turn through each protocol surface vs the native route."""

from __future__ import annotations

import json

import typer
from rich.progress import Progress
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge

SURFACES = ("native_messages", "agent_protocol_wait", "agent_protocol_stream", "openai_chat")


@edge
def bench_protocols(
    turns: int = typer.Option(50, "--turns", min=3, help="Turns through each surface."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Time per turn through the Agent Protocol and the OpenAI-compatible chat, against
    Agentry's own messages route in the same run."""
    from core.bench.database import bench_database
    from core.bench.protocols import run_protocols_bench

    with (
        bench_database(get_settings(), "protocols") as (db, settings),
        Progress(console=console, disable=as_json, transient=True) as progress,
    ):
        task = progress.add_task("turns", total=len(SURFACES) * turns)
        result = run_protocols_bench(db, settings, turns=turns, tick=lambda: progress.advance(task))
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table("surface", "p50 ms", "p95 ms", "ratio p50 vs native")
    for name in SURFACES:
        row = result[name]
        table.add_row(name, str(row["p50_ms"]), str(row["p95_ms"]), str(row["ratio_p50_vs_native"]))
    console.print(table)
