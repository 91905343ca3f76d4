"""``agentry bench runs``: durable background runs through ``agentry worker`` processes.

The benchmark queues runs itself (:func:`core.runs.create_run`, as a cron or an HTTP
request would) in a database of its own, and worker processes run them against an
instant scripted model. It measures:

- throughput of background runs (one run per thread) with one worker process, then
  with two on the same database (the ratio says how work spreads over processes);
- queue latency, create -> start, of single runs on idle workers (the NOTIFY wake-up);
- takeover: a worker process is killed (-9) during a run; the time until the other
  process has claimed it again (goal: the lease + 2 s).

Times come from the runs' own timestamps (``created_at``, ``started_at``, ``ended_at``).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import text

from config import Settings
from core.auth.users import Principal, create_user
from core.bench.metrics import percentile
from core.conversations.store import create_conversation
from core.db.engine import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.errors import AgentryError
from core.runs import create_run
from core.runtime.lifecycle import sync_at_start

AGENT = "assistant"
STATUS_SQL = text(
    "SELECT count(*) FILTER (WHERE status IN ('success', 'error', 'interrupted')) AS done,"
    " count(*) FILTER (WHERE status = 'success') AS ok,"
    " extract(epoch FROM max(ended_at) - min(created_at)) AS seconds"
    " FROM runs WHERE id = ANY(:ids)"
)
ONE_SQL = text(
    "SELECT status, attempt, worker, extract(epoch FROM started_at - created_at) AS queued"
    " FROM runs WHERE id = :id"
)


@contextmanager
def worker_process(env: dict[str, str], threads: int) -> Iterator[subprocess.Popen[str]]:
    """``agentry worker`` in a child process, started (its banner printed)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "core.cli", "worker", "--threads", str(threads)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        banner = child.stdout.readline()
        if "agentry worker" not in banner:
            raise AgentryError("a benchmark worker process did not start")
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _threads(db: Database, user: Principal, count: int) -> list[uuid.UUID]:
    with db.engine.begin() as conn:
        return [create_conversation(conn, user, AGENT).id for _ in range(count)]


def _queue(db: Database, user: Principal, threads: list[uuid.UUID], label: str) -> list[uuid.UUID]:
    with db.engine.begin() as conn:
        return [
            create_run(
                conn, principal=user, thread_id=t, assistant_id=AGENT, content=f"{label} {i}"
            ).id
            for i, t in enumerate(threads)
        ]


def _wait_all(db: Database, ids: list[uuid.UUID], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with db.engine.connect() as conn:
            row = conn.execute(STATUS_SQL, {"ids": ids}).one()
        if row.done == len(ids):
            return row
        if time.monotonic() > deadline:
            raise AgentryError(f"runs did not finish in {timeout:.0f} s ({row.done}/{len(ids)})")
        time.sleep(0.05)


def _throughput(db: Database, user: Principal, runs: int, label: str) -> dict[str, Any]:
    ids = _queue(db, user, _threads(db, user, runs), label)
    row = _wait_all(db, ids, timeout=60 + runs)
    seconds = float(row.seconds or 0)
    return {
        "runs": runs,
        "succeeded": int(row.ok),
        "seconds": round(seconds, 3),
        "runs_per_second": round(runs / seconds, 1) if seconds else None,
    }


def _latency(db: Database, user: Principal, samples: int, tick: Callable[[], None]) -> list[float]:
    (thread,) = _threads(db, user, 1)
    queued = []
    for i in range(samples):
        (run_id,) = _queue(db, user, [thread], f"latency {i}")
        _wait_all(db, [run_id], timeout=30)
        with db.engine.connect() as conn:
            queued.append(float(conn.execute(ONE_SQL, {"id": run_id}).one().queued) * 1000)
        tick()
    return queued


def _takeover(db: Database, user: Principal, llm: ScriptedLLM) -> float:
    """Kill -9 the process running a run; seconds until another process claimed it."""
    (thread,) = _threads(db, user, 1)
    asked = len(llm.chat_requests())
    # Long enough to kill the process while it waits; the answer then goes nowhere.
    llm.enqueue(Reply("lost with its process", delay=1.0))
    (run_id,) = _queue(db, user, [thread], "takeover")
    deadline = time.monotonic() + 30
    while len(llm.chat_requests()) == asked:
        if time.monotonic() > deadline:
            raise AgentryError("the takeover run did not start")
        time.sleep(0.01)
    with db.engine.connect() as conn:
        pid = int(conn.execute(ONE_SQL, {"id": run_id}).one().worker.split(":")[1])
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    while True:
        with db.engine.connect() as conn:
            row = conn.execute(ONE_SQL, {"id": run_id}).one()
        if row.attempt >= 2:
            took = time.monotonic() - killed
            break
        if time.monotonic() - killed > 120:
            raise AgentryError("no process took the run over")
        time.sleep(0.02)
    _wait_all(db, [run_id], timeout=30)
    return took


def run_runs_bench(
    db: Database,
    settings: Settings,
    *,
    runs: int,
    threads: int,
    lease: float,
    samples: int,
    tick: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The whole benchmark on ``db`` (a database of the benchmark's own)."""
    with ScriptedLLM() as llm, ExitStack() as stack:
        local = settings.model_copy(
            update={"llm_base_url": llm.base_url, "llm_model": "scripted", "llm_api_key": None}
        )
        sync_at_start(db, local)
        with db.engine.begin() as conn:
            user, _ = create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@bench.invalid")
        env = {
            **os.environ,
            "DATABASE_URL": db.url.render_as_string(hide_password=False),
            "AGENTRY_PROJECT_DIR": str(settings.project_dir),
            "AGENTRY_LLM_BASE_URL": llm.base_url,
            "AGENTRY_LLM_MODEL": "scripted",
            "AGENTRY_RUN_LEASE_SECONDS": str(lease),
            "DB_MAX_CONNECTIONS": str(2 * threads + 2),
        }
        env.pop("AGENTRY_LLM_API_KEY", None)
        stack.enter_context(worker_process(env, threads))
        _throughput(db, user, max(2, runs // 10), "warm up")
        one = _throughput(db, user, runs, "one process")
        tick()
        queued = _latency(db, user, samples, tick)
        stack.enter_context(worker_process(env, threads))
        _throughput(db, user, max(2, runs // 10), "warm up")
        two = _throughput(db, user, runs, "two processes")
        tick()
        took = _takeover(db, user, llm)
        tick()
    ratio = (
        round(two["runs_per_second"] / one["runs_per_second"], 2)
        if one["runs_per_second"] and two["runs_per_second"]
        else None
    )
    return {
        "benchmark": "runs",
        "threads_per_process": threads,
        "lease_seconds": lease,
        "throughput": {"one_process": one, "two_processes": two, "ratio_two_vs_one": ratio},
        "queue_latency_ms": {
            "samples": samples,
            "p50": round(statistics.median(queued), 1),
            "p95": round(percentile(queued, 95), 1),
        },
        "takeover": {
            "seconds": round(took, 2),
            "goal_seconds": lease + 2,
            "met": took <= lease + 2,
        },
    }
