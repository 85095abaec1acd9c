"""One stream's figures (rates, skips, staleness, queue age, end-to-end latency) under shared.streams' names."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from edge.pacing import Pacer
from edge.percentiles import RollingWindow

RATE_WINDOW_S = 5.0
LATENCY_WINDOW = 512


class _Rate:
    """Events per second over the last RATE_WINDOW_S; the caller holds the figures' lock."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def per_s(self, now: float) -> float:
        self._trim(now)
        return len(self._times) / RATE_WINDOW_S

    def _trim(self, now: float) -> None:
        times = self._times
        while times and now - times[0] > RATE_WINDOW_S:
            times.popleft()


class StreamFigures:
    """Written by the stream's capture thread and the scheduler, read by telemetry; one small lock."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._captured = _Rate()
        self._processed = _Rate()
        self._queue_age = RollingWindow(LATENCY_WINDOW)
        self._e2e = RollingWindow(LATENCY_WINDOW)
        self.frames = 0
        # The stream's fps cap, set by its capture: it counts the frames it discards, and skipped reads that count.
        self.pacer: Pacer | None = None
        self.source_errors = 0
        self.connected = False

    def captured(self) -> None:
        """The source delivered a frame (before any fps cap)."""
        with self._lock:
            self._captured.add(self._clock())

    def error(self) -> None:
        """A read failed, the stream stalled, or a reconnect failed."""
        with self._lock:
            self.source_errors += 1

    def processed(self, captured_at: float, taken_at: float, done_at: float) -> None:
        """One frame of the stream was inferred and its result handed on (perf_counter seconds)."""
        with self._lock:
            self.frames += 1
            self._processed.add(done_at)
            self._queue_age.add((taken_at - captured_at) * 1000.0)
            self._e2e.add((done_at - captured_at) * 1000.0)

    def values(self, skipped: int, stale: int) -> dict[str, float]:
        """The stream's figures now; `skipped` and `stale` are its ring's counts (the fps cap's discards add in)."""
        throttled = 0 if self.pacer is None else self.pacer.throttled
        with self._lock:
            now = self._clock()
            out = {
                "capture_fps": self._captured.per_s(now),
                "processed_fps": self._processed.per_s(now),
                "frames": float(self.frames),
                "skipped": float(skipped + throttled),
                "stale": float(stale),
                "source_errors": float(self.source_errors),
                "connected": 1.0 if self.connected else 0.0,
            }
            for p, v in self._queue_age.percentiles((50, 99)).items():
                out[f"queue_age_ms_p{p:g}"] = v
            for p, v in self._e2e.percentiles((50, 95, 99)).items():
                out[f"e2e_ms_p{p:g}"] = v
        return out
