"""``agentry bench ops`` measures the three configurations against one baseline."""

from __future__ import annotations

from core.bench.ops import CONFIGS, run_ops_bench
from core.db import Database
from tests.core.runtime.helpers import runtime_settings


def test_bench_ops_reports_rates_and_ratios(db: Database) -> None:
    ticks: list[int] = []
    result = run_ops_bench(
        db, runtime_settings(None), requests=20, rounds=1, tick=lambda: ticks.append(1)
    )
    assert len(ticks) == len(CONFIGS)
    assert set(result["requests_per_second"]) == set(CONFIGS)
    assert all(rate > 0 for rate in result["requests_per_second"].values())
    assert result["ratio_vs_baseline"]["baseline"] == 1.0
    assert result["route"] == "GET /v1/me"
