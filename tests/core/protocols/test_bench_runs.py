"""Smoke test of ``agentry bench runs`` with tiny parameters (two worker processes)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from core.cli.main import app
from core.db import Database
from tests.core.runtime.helpers import ROOT


@pytest.mark.slow
def test_bench_runs_smoke(db: Database, use_database: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(ROOT))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    use_database(db)
    args = ["bench", "runs", "--runs", "6", "--threads", "2", "--lease", "1", "--samples", "3"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["benchmark"] == "runs"
    put = report["throughput"]
    assert put["one_process"]["succeeded"] == put["two_processes"]["succeeded"] == 6
    assert put["ratio_two_vs_one"] > 0
    assert 0 < report["queue_latency_ms"]["p50"] <= report["queue_latency_ms"]["p95"]
    assert 0 < report["takeover"]["seconds"] < 10
