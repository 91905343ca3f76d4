"""Turns counted and traced: one wrapper around :func:`core.runtime.turns.run_turn`."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

from core.errors import AgentryError
from core.observability.metrics import TURN_DURATION, TURNS
from core.observability.tracing import traced

P = ParamSpec("P")
E = TypeVar("E")


def _observe(events: Iterator[E]) -> Iterator[E]:
    started = time.perf_counter()
    outcome = "abandoned"  # the consumer stopped before the final event
    try:
        for event in traced("agentry.turn", events):
            data: Any = event
            if data.type == "final":
                outcome = "interrupted" if data.data.get("interrupts") else "completed"
            yield event
    except AgentryError as exc:
        outcome = "refused" if exc.status < 500 else "failed"
        raise
    except Exception:
        outcome = "failed"
        raise
    finally:
        TURNS.labels(outcome).inc()
        TURN_DURATION.labels(outcome).observe(time.perf_counter() - started)


def observed_turn(run: Callable[P, Iterator[E]]) -> Callable[P, Iterator[E]]:
    """Count (``agentry_turns_total``), time and trace (``agentry.turn``) every turn."""

    @functools.wraps(run)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[E]:
        return _observe(run(*args, **kwargs))

    return wrapper
