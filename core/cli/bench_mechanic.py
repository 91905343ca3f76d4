"""``agentry bench mechanic``: plan-to-live lead time, and how long live tables are locked.

The work is in :mod:`core.bench.mechanic`, imported when the command runs.
"""

from __future__ import annotations

import json

import typer
from rich.progress import Progress
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge


@edge
def bench_mechanic(
    entities: int = typer.Option(10, "--entities", min=1, max=100, help="Entity additions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Plan-to-live lead time (p50 over entity additions) and lock impact on live tables."""
    from core.bench.mechanic import GOAL_SECONDS, run_bench

    with Progress(console=console, disable=as_json, transient=True) as progress:
        task = progress.add_task("entity additions", total=entities)
        report = run_bench(get_settings(), entities, tick=lambda: progress.advance(task))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table("measure", "value")
    table.add_row("entity additions", str(report["entities"]))
    table.add_row(
        "plan-to-live p50 / max (s)",
        f"{report['lead_time_s']['p50']} / {report['lead_time_s']['max']}",
    )
    table.add_row("plan p50 / apply p50 (s)", f"{report['plan_s_p50']} / {report['apply_s_p50']}")
    table.add_row(
        "bare DDL p50 (s) / lead-time ratio",
        f"{report['baseline_ddl_s_p50']} / {report['lead_time_vs_ddl_ratio']}x",
    )
    table.add_row(f"goal {GOAL_SECONDS:g} s met", str(report["meets_goal"]))
    lock = report["lock"]
    table.add_row(
        "writer p50 / max idle (ms)",
        f"{lock['baseline_write_p50_ms']} / {lock['baseline_write_max_ms']}",
    )
    table.add_row(
        "writer max during apply (ms)",
        f"{lock['during_apply_write_max_ms']} ({lock['max_stall_vs_baseline_ratio']}x)",
    )
    table.add_row(
        "within lock_timeout", f"{lock['within_lock_timeout']} ({lock['lock_timeout_ms']} ms)"
    )
    chat = report["conversation_to_live"]
    table.add_row(
        "conversation-to-live (s)",
        f"{chat['total_s']} (proposal {chat['proposal_s']}, approval pause "
        f"{chat['approval_pause_s']}, apply {chat['apply_s']}, first record "
        f"{chat['first_record_s']})",
    )
    console.print(table)
