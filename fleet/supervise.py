"""Keeps the control plane's background loops alive: a failure is logged in one line, counted, backed off, retried.

A worker whose ingest or lease loop died would look healthy while the registry goes stale, so no loop body may end
on an exception it did not expect. (The agent has its own edge/supervise.py; fleet/ imports only shared/.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class LoopHealth:
    """Failure counts per loop and the last error of loops failing now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.errors: dict[str, int] = {}
        self.failing: dict[str, str] = {}

    def failed(self, name: str, exc: BaseException) -> None:
        """Count one failure."""
        with self._lock:
            self.errors[name] = self.errors.get(name, 0) + 1
            self.failing[name] = f"{type(exc).__name__}: {exc}"[:300]

    def ok(self, name: str) -> None:
        """The loop did its work again."""
        if name in self.failing:
            with self._lock:
                self.failing.pop(name, None)


def every(name: str, interval_s: Callable[[], float], body: Callable[[], None], stop: threading.Event,
          health: LoopHealth) -> threading.Thread:
    """A daemon thread calling body() every interval_s() seconds until stop; failures back off and retry."""

    def run() -> None:
        backoff = FIRST_BACKOFF_S
        while not stop.is_set():
            started = time.monotonic()
            try:
                body()
            except Exception as exc:  # noqa: BLE001 - a supervisor: nothing may end the loop
                health.failed(name, exc)
                log.error("%s failed (%s: %s); retrying in %.1f s", name, type(exc).__name__, exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            health.ok(name)
            backoff = FIRST_BACKOFF_S
            stop.wait(max(0.0, interval_s() - (time.monotonic() - started)))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
