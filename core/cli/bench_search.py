"""``agentry bench search``: CISI quality (--dataset cisi) or synthetic scale (--scale N)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge
from core.cli.progress import phase_progress
from core.errors import ValidationFailed
from core.memory.heap import keep_freed_memory


@edge
def bench_search(
    dataset: str = typer.Option(None, "--dataset", help="Quality benchmark: cisi."),
    scale: int = typer.Option(None, "--scale", help="Scale benchmark: number of vectors."),
    queries: int = typer.Option(None, "--queries", help="Limit the number of queries."),
    docs: int = typer.Option(None, "--docs", help="CISI: limit the number of documents."),
    ingest_sample: int = typer.Option(
        2000, "--ingest-sample", help="Scale: texts embedded end to end for the ingest rate."
    ),
    real_text: bool = typer.Option(
        False, "--text", help="Scale: real text (keyword, vector, hybrid) instead of vectors."
    ),
    vector_type: str = typer.Option(
        None,
        "--vector-type",
        help="Scale: vector, halfvec or both (compared in one run); default AGENTRY_VECTOR_TYPE.",
    ),
    synthetic: str = typer.Option(
        "fitted",
        "--synthetic",
        help="Scale: synthetic rows fitted around the real embeddings (fitted) or in an "
        "unrelated subspace (independent, a stress case).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Measure search quality on CISI or speed/recall at scale (see README)."""
    if (dataset is None) == (scale is None):
        raise ValidationFailed("give exactly one of --dataset cisi or --scale N")
    settings = get_settings()
    keep_freed_memory(settings.malloc_keep_mb)  # as the server does: core/api/app.py
    with phase_progress(quiet=as_json) as progress:
        if dataset is not None:
            if dataset.lower() != "cisi":
                raise ValidationFailed(f"--dataset: only cisi is available (got {dataset!r})")
            from core.bench.search_cisi import run_cisi

            report = run_cisi(settings, limit_queries=queries, limit_docs=docs, progress=progress)
        else:
            if scale < 100:
                raise ValidationFailed("--scale: at least 100 vectors")
            kinds = {None: None, "both": ["vector", "halfvec"]}.get(
                vector_type, [vector_type] if vector_type in ("vector", "halfvec") else []
            )
            if kinds == []:
                raise ValidationFailed(
                    f"--vector-type: vector, halfvec or both (got {vector_type!r})"
                )
            if real_text:
                from core.bench.keyword import run_text_scale

                report = run_text_scale(
                    settings, n=scale, queries=queries or 100, progress=progress
                )
                if as_json:
                    typer.echo(json.dumps(report, indent=2))
                else:
                    _print(report)
                return
            from core.bench.search_scale import run_scale

            report = run_scale(
                settings,
                n=scale,
                queries=queries or 200,
                ingest_sample=ingest_sample,
                vector_types=kinds,
                layout=synthetic,
                progress=progress,
            )
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    table = Table("metric", "value", title=f"bench search ({report.get('dataset', 'scale')})")

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            table.add_row(prefix, str(value))

    walk("", report)
    console.print(table)
