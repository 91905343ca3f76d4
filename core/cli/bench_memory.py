"""``agentry bench memory``: LoCoMo conversational recall (logic in core/bench/memory.py)."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge
from core.cli.progress import phase_progress


@edge
def bench_memory(
    conversations: list[str] = typer.Option(
        None, "--conversations", help="LoCoMo file stems (26, 30, ...); default all."
    ),
    questions: int = typer.Option(
        None, "--questions", min=1, help="At most this many questions per conversation."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Recall@5/10/25 of LoCoMo evidence turns per category, against plain baselines."""
    from core.bench.memory import run_memory_bench  # the model: only when it runs

    with phase_progress(quiet=as_json) as progress:
        report = run_memory_bench(
            get_settings(), files=conversations, limit_questions=questions, progress=progress
        )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table("method", "category", "@5", "@10", "@25", "questions")
    for method, summary in [("recall", report["recall"]), *report["baselines"].items()]:
        for cat, row in summary.items():
            table.add_row(
                method,
                cat,
                str(row["recall@5"]),
                str(row["recall@10"]),
                str(row["recall@25"]),
                str(row["questions"]),
            )
    console.print(table)
    ingest, query = report["ingest"], report["query"]
    console.print(
        f"ingest: {ingest['messages']} messages in {ingest['seconds']} s "
        f"({ingest['messages_per_second']}/s, embedded); query p50 {query['p50_ms']} ms, "
        f"p95 {query['p95_ms']} ms"
    )
