"""Per-frame timing records of the frame loop, read by telemetry under the metric names of shared.metrics."""

from __future__ import annotations

import threading
import time
from collections import deque

from edge.percentiles import StageWindows

FPS_WINDOW_S = 5.0
STAGE_WINDOW = 1024


class FrameStats:
    """Written by the frame thread, read by telemetry; one lock keeps the two apart (microseconds per frame)."""

    def __init__(self, window: int = STAGE_WINDOW, fps_window_s: float = FPS_WINDOW_S) -> None:
        self._lock = threading.Lock()
        self._stages = StageWindows(window)
        self._fps_window_s = fps_window_s
        self._ends: deque[float] = deque()
        self._first_end: float | None = None
        self.frames = 0
        self.waiting = 0
        self.errors = 0
        self.swaps = 0
        self.swap_pause_ms: float | None = None

    def record(
        self,
        capture_wait: float,
        preprocess: float,
        infer: float,
        postprocess: float,
        publish: float,
        e2e: float,
        end: float,
    ) -> None:
        """One inferred frame: stage durations in seconds, `end` the perf_counter() after publish."""
        with self._lock:
            stages = self._stages
            stages.record("capture_wait", capture_wait * 1e3)
            stages.record("preprocess", preprocess * 1e3)
            stages.record("infer", infer * 1e3)
            stages.record("postprocess", postprocess * 1e3)
            stages.record("publish", publish * 1e3)
            stages.record("e2e", e2e * 1e3)
            self.frames += 1
            if self._first_end is None:
                self._first_end = end
            self._ends.append(end)
            self._prune(end)

    def record_waiting(self) -> None:
        """A frame arrived before any model was installed."""
        with self._lock:
            self.waiting += 1

    def record_error(self) -> None:
        """A frame whose preprocessing, inference, postprocessing or publishing failed."""
        with self._lock:
            self.errors += 1

    def record_swap(self, pause_s: float) -> None:
        """The frame loop moved to a new model; pause_s is the longest gap between results around it."""
        with self._lock:
            self.swaps += 1
            self.swap_pause_ms = pause_s * 1e3

    def fps(self, now: float | None = None) -> float:
        """Results per second over the last window (shorter right after start)."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            self._prune(now)
            if self._first_end is None:
                return 0.0
            span = min(self._fps_window_s, now - self._first_end)
            return len(self._ends) / span if span > 0 else 0.0

    def values(self, now: float | None = None) -> dict[str, float]:
        """fps, frames, <stage>_ms_p50/95/99, swaps and swap_pause_ms (once a swap was seen)."""
        fps = self.fps(now)
        with self._lock:
            out = {"fps": fps, "frames": float(self.frames), "swaps": float(self.swaps)}
            out.update(self._stages.values())
            if self.swap_pause_ms is not None:
                out["swap_pause_ms"] = self.swap_pause_ms
            return out

    def _prune(self, now: float) -> None:
        horizon = now - self._fps_window_s
        ends = self._ends
        while ends and ends[0] < horizon:
            ends.popleft()
