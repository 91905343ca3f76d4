"""``agentry bench ops``: requests/s with and without metrics and rate limits."""

from __future__ import annotations

import json

import typer
from rich.progress import Progress
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge


@edge
def bench_ops(
    requests: int = typer.Option(500, "--requests", min=10, help="Requests per round."),
    rounds: int = typer.Option(5, "--rounds", min=1, help="Rounds per configuration."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """GET /v1/me on three servers (neither, metrics, metrics + limits), in alternating
    rounds: requests/s and the ratio to the baseline measured in the same run."""
    from core.bench.database import bench_database
    from core.bench.ops import CONFIGS, run_ops_bench

    with (
        bench_database(get_settings(), "ops") as (db, settings),
        Progress(console=console, disable=as_json, transient=True) as progress,
    ):
        task = progress.add_task("rounds", total=rounds * len(CONFIGS))
        result = run_ops_bench(
            db, settings, requests=requests, rounds=rounds, tick=lambda: progress.advance(task)
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table("configuration", "requests/s", "ratio vs baseline", "ms added per request")
    for name, rate in result["requests_per_second"].items():
        table.add_row(
            name,
            str(rate),
            str(result["ratio_vs_baseline"][name]),
            str(result["overhead_ms_per_request"][name]),
        )
    console.print(table)
