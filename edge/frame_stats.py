"""Per-frame timing records of the frame loop, read by telemetry under the metric names of shared.metrics."""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from edge.percentiles import StageWindows
from shared.metrics import LATENCY_BUCKETS_S, STAGES

FPS_WINDOW_S = 5.0
STAGE_WINDOW = 1024


@dataclass(frozen=True)
class HistogramSnapshot:
    """One stage's latency since boot, in Prometheus form: cumulative counts per upper bound (seconds)."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # observations <= bounds[i]; len(bounds) + 1 entries, the last one is +Inf
    sum_s: float
    count: int


class LatencyHistograms:
    """Per-stage bucket counts since boot: one bisect and two additions per stage per frame, nothing allocated."""

    def __init__(self, stages: Sequence[str] = STAGES, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self._bounds = tuple(bounds)
        self._counts = {stage: [0] * (len(self._bounds) + 1) for stage in stages}
        self._sums = dict.fromkeys(stages, 0.0)

    def observe(self, stage: str, seconds: float) -> None:
        """Count one duration; NaN and infinities are ignored like the percentile windows do."""
        if math.isfinite(seconds):
            self._counts[stage][bisect_left(self._bounds, seconds)] += 1
            self._sums[stage] += seconds

    def snapshot(self) -> dict[str, HistogramSnapshot]:
        """Cumulative (le) counts per stage, summed here so the frame path only increments one bucket."""
        out = {}
        for stage, counts in self._counts.items():
            running, cumulative = 0, []
            for n in counts:
                running += n
                cumulative.append(running)
            out[stage] = HistogramSnapshot(self._bounds, tuple(cumulative), self._sums[stage], running)
        return out


class FrameStats:
    """Written by the frame thread, read by telemetry; one lock keeps the two apart (microseconds per frame)."""

    def __init__(self, window: int = STAGE_WINDOW, fps_window_s: float = FPS_WINDOW_S) -> None:
        self._lock = threading.Lock()
        self._stages = StageWindows(window)
        self._histograms = LatencyHistograms()
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
            hist = self._histograms
            hist.observe("capture_wait", capture_wait)
            hist.observe("preprocess", preprocess)
            hist.observe("infer", infer)
            hist.observe("postprocess", postprocess)
            hist.observe("publish", publish)
            hist.observe("e2e", e2e)
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

    def histograms(self) -> dict[str, HistogramSnapshot]:
        """Per-stage latency histograms since boot (for Prometheus; MQTT telemetry keeps the flat percentiles)."""
        with self._lock:
            return self._histograms.snapshot()

    def _prune(self, now: float) -> None:
        horizon = now - self._fps_window_s
        ends = self._ends
        while ends and ends[0] < horizon:
            ends.popleft()
