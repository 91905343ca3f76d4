"""``agentry bench``: benchmarks; JSON with ``--json``, a table otherwise."""

from __future__ import annotations

import json
from contextlib import nullcontext

import typer
from rich.table import Table

from config import get_settings
from core.cli import (
    bench_embedded,
    bench_mechanic,
    bench_memory,
    bench_ops,
    bench_protocols,
    bench_runs,
    bench_search,
)
from core.cli.edge import console, edge

app = typer.Typer(
    help="Benchmarks (ratios against a baseline measured in the same run).", no_args_is_help=True
)


@app.command("chat")
@edge
def chat(
    turns: int = typer.Option(200, "--turns", min=5, help="Turns for the per-turn overhead."),
    sessions: int = typer.Option(16, "--sessions", min=1, help="Concurrent sessions."),
    dialogues: int = typer.Option(
        64, "--dialogues", min=1, help="DailyDialog dialogues replayed by the sessions."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per-turn platform overhead vs LangGraph's in-memory saver, and turns/s under load."""
    from core.bench.chat import run_chat_bench
    from core.bench.database import bench_database

    base = get_settings()
    settings = base.model_copy(
        update={"db_max_connections": max(base.db_max_connections, 2 * sessions + 4)}
    )
    with (
        console.status("preparing the benchmark database...") if not as_json else nullcontext(),
        bench_database(settings, "chat") as (db, bench_settings),
    ):
        result = run_chat_bench(
            db, bench_settings, turns=turns, sessions=sessions, dialogues=dialogues
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    over, conc = result["overhead"], result["concurrency"]
    table = Table("measure", "p50", "p95")
    table.add_row(
        "LangGraph in-memory baseline (ms/turn)",
        str(over["baseline_inmemory_ms"]["p50"]),
        str(over["baseline_inmemory_ms"]["p95"]),
    )
    table.add_row(
        "Agentry platform (ms/turn)",
        str(over["platform_ms"]["p50"]),
        str(over["platform_ms"]["p95"]),
    )
    table.add_row(
        "overhead (ms/turn, goal ≤ 15 at p50)",
        str(over["overhead_ms"]["p50"]),
        str(over["overhead_ms"]["p95"]),
    )
    table.add_row("ratio platform / baseline", str(over["ratio_p50"]), "")
    console.print(table)
    console.print(
        f"{conc['sessions']} sessions: {conc['turns']} turns in {conc['seconds']} s ="
        f" {conc['turns_per_second']} turns/s; messages {conc['messages_stored']}"
        f"/{conc['messages_expected']} (lost {conc['lost_messages']})"
    )
    rec = result["recall"]
    console.print(
        f"automatic recall (k {rec['config']['k']}): +{rec['added_ms']['p50']} ms p50"
        f" / +{rec['added_ms']['p95']} ms p95 per model call,"
        f" +{rec['added_prompt_tokens']['mean']} prompt tokens on average"
    )


app.command("mechanic")(bench_mechanic.bench_mechanic)
app.command("search")(bench_search.bench_search)
app.command("protocols")(bench_protocols.bench_protocols)
app.command("runs")(bench_runs.bench_runs)
app.command("memory")(bench_memory.bench_memory)
app.command("ops")(bench_ops.bench_ops)
app.command("embedded")(bench_embedded.bench_embedded)
