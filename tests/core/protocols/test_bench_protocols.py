"""Smoke test of ``agentry bench protocols`` with tiny parameters."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from core.cli.main import app
from core.db import Database


def test_bench_protocols_smoke(db: Database, use_database: Any) -> None:
    use_database(db)
    result = CliRunner().invoke(app, ["bench", "protocols", "--turns", "3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["benchmark"] == "protocols" and report["turns"] == 3
    assert report["native_messages"]["ratio_p50_vs_native"] == 1.0
    for surface in ("agent_protocol_wait", "agent_protocol_stream", "openai_chat"):
        assert report[surface]["p50_ms"] > 0 and report[surface]["ratio_p50_vs_native"] > 0
