"""``agentry bench ops``: what metrics and rate limits cost on the request path.

Three servers of the same process on one database answer ``GET /v1/me`` (an
authenticated route that does nothing else): one with neither metrics nor limits
(the baseline), one with the metrics middleware, one with metrics and a request
token taken per call (limits high enough never to refuse). Rounds alternate between
them, so load on the machine hits all three alike; each reports its median rate and
the ratio to the baseline measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import httpx

from config import Settings
from core.auth.users import create_user
from core.bench.protocols import live_server
from core.db.engine import Database

CONFIGS: dict[str, dict[str, Any]] = {
    "baseline": {"metrics_enabled": False, "rate_limits": False},
    "metrics": {"metrics_enabled": True, "rate_limits": False},
    "metrics_and_limits": {
        "metrics_enabled": True,
        "rate_limits": True,
        "rate_requests": 10_000_000,
        "rate_requests_admin": 10_000_000,
    },
}


def _rate(url: str, key: str, requests: int) -> float:
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
        client.get(f"{url}/v1/me").raise_for_status()  # connection open, caches warm
        started = time.perf_counter()
        for _ in range(requests):
            client.get(f"{url}/v1/me").raise_for_status()
        return requests / (time.perf_counter() - started)


def run_ops_bench(
    db: Database,
    settings: Settings,
    *,
    requests: int = 500,
    rounds: int = 5,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Requests/s of ``GET /v1/me`` per configuration (median of ``rounds``) and ratios."""
    with db.engine.begin() as conn:
        _, key = create_user(conn, f"bench-{time.time_ns()}@example.org")
    quiet = {"embed_interval": 0, "run_workers": 0, "cron_interval": 0, "webhook_interval": 0}
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(
                live_server(db, settings.model_copy(update={**quiet, **config}))
            )
            for name, config in CONFIGS.items()
        }
        for _ in range(rounds):
            for name, url in urls.items():
                rates[name].append(_rate(url, key, requests))
                tick()
    medians = {name: round(statistics.median(found), 1) for name, found in rates.items()}
    base = medians["baseline"]
    return {
        "route": "GET /v1/me",
        "requests_per_round": requests,
        "rounds": rounds,
        "requests_per_second": medians,
        "ratio_vs_baseline": {name: round(rate / base, 3) for name, rate in medians.items()},
        "overhead_ms_per_request": {
            name: round(1000 / rate - 1000 / base, 3) for name, rate in medians.items()
        },
    }
