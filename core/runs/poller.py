"""A daemon thread that calls a function every ``interval`` seconds until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Poller:
    """Calls ``step`` every ``interval`` seconds; again at once while it reports work.

    ``step`` returns how many items it handled; a failing step is logged and the loop
    goes on (the database may be away for a moment).
    """

    def __init__(self, name: str, interval: float, step: Callable[[], int]) -> None:
        self.interval = interval
        self._step = step
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Poll now instead of at the end of the interval."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self._step()
            except Exception:
                log.exception("%s: poll failed", self._thread.name)
                handled = 0
            if handled:
                continue
            self._wake.wait(self.interval)
            self._wake.clear()
