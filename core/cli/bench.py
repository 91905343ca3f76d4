"""``agentry bench``: benchmarks, one sub-command each (printing JSON with --json)."""

from __future__ import annotations

import typer

from core.cli import bench_search

app = typer.Typer(
    help="Benchmarks (ratios against a baseline measured in the same run).", no_args_is_help=True
)
app.command("search")(bench_search.bench_search)
