"""``agentry bench``: benchmarks; JSON with ``--json``, a table otherwise."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from sqlalchemy import create_engine, text

from config import Settings, get_settings
from core.bench.chat import run_chat_bench
from core.bench.protocols import run_protocols_bench
from core.cli.edge import console, edge
from core.db import Database, open_database, prepare_database
from core.db.engine import create_db_engine, normalize_url
from core.errors import DatabaseError

app = typer.Typer(
    help="Benchmarks (ratios against a baseline measured in the same run).", no_args_is_help=True
)


def bench_database(settings: Settings) -> Database:
    """A database of the benchmark's own (``<AGENTRY_DB_NAME>_bench``), created when missing,
    so benchmark users, conversations and the scripted model never reach real data."""
    name = f"{settings.db_name}_bench"
    if settings.uses_embedded_database:
        return open_database(settings, database=name)
    assert settings.database_url is not None
    url = normalize_url(settings.database_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise DatabaseError(f"cannot create the benchmark database {name}: {exc}") from None
    finally:
        admin.dispose()
    bench_url = url.set(database=name)
    host = bench_url.query.get("host") or bench_url.host or ""
    socket = isinstance(host, str) and host.startswith("/")
    return Database(url=bench_url, engine=create_db_engine(bench_url, settings, unix_socket=socket))


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
    base = get_settings()
    settings = base.model_copy(
        update={"db_max_connections": max(base.db_max_connections, 2 * sessions + 4)}
    )
    db = bench_database(settings)
    try:
        with console.status("preparing the benchmark database...") if not as_json else _null():
            prepare_database(db, settings)
        with console.status("running turns...") if not as_json else _null():
            result = run_chat_bench(
                db, settings, turns=turns, sessions=sessions, dialogues=dialogues
            )
    finally:
        db.dispose()
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


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@app.command("protocols")
@edge
def protocols(
    turns: int = typer.Option(50, "--turns", min=3, help="Turns through each surface."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Time per turn through the Agent Protocol and the OpenAI-compatible chat, against
    Agentry's own messages route in the same run."""
    from rich.progress import Progress

    settings = get_settings()
    db = bench_database(settings)
    try:
        prepare_database(db, settings)
        with Progress(console=console, disable=as_json, transient=True) as progress:
            task = progress.add_task("turns", total=4 * turns)
            result = run_protocols_bench(
                db, settings, turns=turns, tick=lambda: progress.advance(task)
            )
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table("surface", "p50 ms", "p95 ms", "ratio p50 vs native")
    for name in ("native_messages", "agent_protocol_wait", "agent_protocol_stream", "openai_chat"):
        row = result[name]
        table.add_row(name, str(row["p50_ms"]), str(row["p95_ms"]), str(row["ratio_p50_vs_native"]))
    console.print(table)
