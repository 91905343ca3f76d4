"""One progress display for commands whose work reports ``progress(phase, done, total)``.

Indexing, re-embedding and the benchmarks report phases by name; each phase gets its own
bar the first time it reports, so the library code never needs to know about rich.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from core.cli.edge import console

PhaseProgress = Callable[[str, int, int], None]


@contextmanager
def phase_progress(*, quiet: bool = False, transient: bool = True) -> Iterator[PhaseProgress]:
    """Yield a ``progress(phase, done, total)`` callback drawing one bar per phase.

    Args:
        quiet: draw nothing (``--json`` output must stay machine-readable).
        transient: remove the bars when done (benchmarks print a table after them);
            kept bars also show the elapsed time.
    """
    columns: list[ProgressColumn] = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
    ]
    if not transient:
        columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=transient) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        yield progress
