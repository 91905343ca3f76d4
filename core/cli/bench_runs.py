"""``agentry bench runs``: background-run throughput, queue latency and takeover time."""

from __future__ import annotations

import json

import typer
from rich.progress import Progress
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge


@edge
def bench_runs(
    runs: int = typer.Option(200, "--runs", min=2, help="Background runs per throughput pass."),
    threads: int = typer.Option(4, "--threads", min=1, help="Worker threads per process."),
    lease: float = typer.Option(3.0, "--lease", min=1, help="Run lease (seconds)."),
    samples: int = typer.Option(30, "--samples", min=1, help="Runs timed for queue latency."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Durable runs through `agentry worker` processes: throughput with one and two
    processes, create->start latency, and takeover after a kill -9."""
    from core.bench.database import bench_database
    from core.bench.runs import run_runs_bench

    with (
        bench_database(get_settings(), "runs") as (db, settings),
        Progress(console=console, disable=as_json, transient=True) as progress,
    ):
        task = progress.add_task("runs", total=samples + 3)
        result = run_runs_bench(
            db,
            settings,
            runs=runs,
            threads=threads,
            lease=lease,
            samples=samples,
            tick=lambda: progress.advance(task),
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    put, wait, over = result["throughput"], result["queue_latency_ms"], result["takeover"]
    table = Table("measure", "value")
    table.add_row("runs/s, one process", str(put["one_process"]["runs_per_second"]))
    table.add_row("runs/s, two processes", str(put["two_processes"]["runs_per_second"]))
    table.add_row("ratio two / one", str(put["ratio_two_vs_one"]))
    table.add_row("queue latency create->start p50 / p95 (ms)", f"{wait['p50']} / {wait['p95']}")
    table.add_row(
        f"takeover after kill -9 (s, goal {over['goal_seconds']})",
        f"{over['seconds']} ({'met' if over['met'] else 'missed'})",
    )
    console.print(table)
