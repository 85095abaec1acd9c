"""Keeps every background thread alive: a failure is logged in one line, counted, backed off and retried.

A device that looks healthy while its poll or sender thread is dead never updates and never reports; so no
thread body may end on an exception it did not expect. `Health` is what telemetry (`thread_errors`) and the
state payload (`degraded`) read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge.pacing import Backoff

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
# A body that ran this long without failing starts its next backoff from the first delay again.
HEALTHY_AFTER_S = 60.0


@dataclass
class ComponentHealth:
    """Failures of one component since start, and the last one while it is still degraded."""

    errors: int = 0
    last_error: str | None = None
    degraded: bool = False


class Health:
    """Thread-safe record of component failures, shared by everything the agent supervises."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._components: dict[str, ComponentHealth] = {}
        # Names degraded now; read without the lock by ok(), which hot paths call.
        self._degraded: frozenset[str] = frozenset()

    def failed(self, component: str, exc: BaseException | str) -> None:
        """Count one failure and mark the component degraded until it reports recovery."""
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            c = self._components.setdefault(component, ComponentHealth())
            c.errors += 1
            c.last_error = text[:300]
            c.degraded = True
            self._degraded = self._degraded | {component}

    def recovered(self, component: str) -> None:
        """The component works again; its error count stays."""
        with self._lock:
            c = self._components.get(component)
            if c is not None and c.degraded:
                c.degraded = False
                c.last_error = None
            self._degraded = self._degraded - {component}

    def ok(self, component: str) -> None:
        """The component just did its work; cheap enough for every frame (no lock unless it was degraded)."""
        if component in self._degraded:
            self.recovered(component)

    def errors(self, component: str | None = None) -> int:
        """Failures of one component, or of all of them."""
        with self._lock:
            if component is not None:
                c = self._components.get(component)
                return c.errors if c else 0
            return sum(c.errors for c in self._components.values())

    def degraded(self) -> dict[str, str]:
        """Components failing now, with their last error (for the state payload)."""
        with self._lock:
            return {n: c.last_error or "failed" for n, c in sorted(self._components.items()) if c.degraded}

    def metrics(self) -> dict[str, float]:
        """Telemetry figures: failures of supervised threads since start."""
        return {"thread_errors": float(self.errors())}


def keep_running(
    name: str,
    body: Callable[[], None],
    stop: threading.Event,
    health: Health,
    *,
    restart_on_return: bool = False,
    first_backoff_s: float = FIRST_BACKOFF_S,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> None:
    """Call body() until stop is set; an exception is logged, counted and retried after a growing delay.

    A body that returns normally ends the loop unless restart_on_return (for bodies that return on a condition
    they expect to clear, such as a lost connection).
    """
    backoff = Backoff(first_backoff_s, max_backoff_s)
    while not stop.is_set():
        started = time.monotonic()
        try:
            body()
        except Exception as exc:  # noqa: BLE001 - the point of this loop: nothing may end the thread
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                backoff.reset()
            health.failed(name, exc)
            log.error("%s thread failed (%s: %s); retrying in %.1f s", name, type(exc).__name__, exc,
                      backoff.delay_s)
            backoff.wait(stop)
            continue
        health.recovered(name)
        if not restart_on_return:
            return
        backoff.reset()
        stop.wait(first_backoff_s)


def spawn(
    name: str,
    body: Callable[[], None],
    stop: threading.Event,
    health: Health,
    *,
    restart_on_return: bool = False,
) -> threading.Thread:
    """Start a daemon thread that runs body under keep_running."""
    thread = threading.Thread(
        target=keep_running,
        args=(name, body, stop, health),
        kwargs={"restart_on_return": restart_on_return},
        name=name,
        daemon=True,
    )
    thread.start()
    return thread
