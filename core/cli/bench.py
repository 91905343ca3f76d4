"""``agentry bench``: benchmarks (each in its own module, added here)."""

from __future__ import annotations

import typer

from core.cli import bench_mechanic

app = typer.Typer(help="Benchmarks: JSON with --json, a table otherwise.", no_args_is_help=True)
app.command("mechanic")(bench_mechanic.bench_mechanic)
