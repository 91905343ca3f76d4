"""Durable runs: rows in PostgreSQL, executed by worker loops in any process.

- :func:`create_run` queues a run in the caller's transaction (crons use it too).
- :func:`cancel_run` cancels one, wherever it runs (NOTIFY).
- :func:`on_run_finished` registers a hook called in the transaction that records
  a run's end (webhooks).
- :func:`start_runs` starts a process's listener and workers (``agentry up``,
  ``agentry worker``).
- :mod:`core.runs.crons` fires crons (scheduled runs); :mod:`core.runs.webhooks`
  POSTs finished runs to their webhooks.
"""

from core.runs.service import RunService, cancel_run, create_run, start_runs
from core.runs.worker import on_run_finished

__all__ = ["RunService", "cancel_run", "create_run", "on_run_finished", "start_runs"]
