"""A simulated multi-stream agent's per-stream figures (shared.streams' table), one stream optionally stalled.

Each camera runs near its fps with a little jitter; counters only grow. A stalled stream stops delivering: its
rates drop to 0, `connected` to 0, its source errors grow each window and its queue age and e2e stay at the last
values it had (as an agent reports a stream that has produced nothing since). Each stream reports the version of
the model serving it when the device says which (`model_version`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.streams import STREAM_BY_NAME, check_stream_name

MAX_SIM_STREAMS = 32
# The table's row for each stream's model_version, looked up once rather than per stream per window.
MODEL_VERSION = STREAM_BY_NAME["model_version"]


def stream_names(n: int) -> list[str]:
    """cam0, cam1, ...: names the contract accepts."""
    if not 1 <= n <= MAX_SIM_STREAMS:
        raise ValueError(f"--streams must be between 1 and {MAX_SIM_STREAMS}, got {n}")
    return [check_stream_name(f"cam{i}") for i in range(n)]


@dataclass
class _Stream:
    fps: float
    frames: float = 0.0
    skipped: float = 0.0
    stale: float = 0.0
    errors: float = 0.0
    e2e_p50: float = 0.0


@dataclass
class StreamsSim:
    """N camera streams of one simulated device; `stalled` names the one that stopped delivering (or None)."""

    count: int
    seed: str
    stalled: str | None = None
    fps: float = 15.0
    _streams: dict[str, _Stream] = field(default_factory=dict)
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._streams = {name: _Stream(self.fps) for name in stream_names(self.count)}
        if self.stalled is not None and self.stalled not in self._streams:
            raise ValueError(f"stalled stream {self.stalled!r} is not one of {', '.join(self._streams)}")

    @property
    def names(self) -> list[str]:
        """The streams' names, in order."""
        return list(self._streams)

    def tick(self, interval_s: float, versions: Mapping[str, int] | None = None) -> dict[str, dict[str, float]]:
        """One telemetry window: stream name -> its figures, every value within the table's bounds; `versions`
        (stream -> version of the model serving it, 0 for none) adds each stream's model_version."""
        out = {name: self._window(name, s, interval_s) for name, s in self._streams.items()}
        if versions is not None:
            for name, figures in out.items():
                figures["model_version"] = MODEL_VERSION.check(float(versions.get(name, 0)))
        return out

    def _window(self, name: str, s: _Stream, interval_s: float) -> dict[str, float]:
        rng = self._rng
        if name == self.stalled:
            s.errors += 1
            capture = processed = 0.0
            connected = 0.0
            queue_p50 = queue_p99 = 0.0
        else:
            capture = max(0.0, s.fps * rng.uniform(0.97, 1.03))
            processed = capture * rng.uniform(0.9, 1.0)
            s.frames += round(processed * interval_s)
            s.skipped += round((capture - processed) * interval_s)
            s.stale += 1 if rng.random() < 0.05 else 0
            connected = 1.0
            queue_p50 = rng.uniform(1.0, 4.0)
            queue_p99 = queue_p50 * rng.uniform(2.0, 4.0)
            s.e2e_p50 = queue_p50 + rng.uniform(8.0, 14.0)
        p50 = s.e2e_p50
        figures = {
            "capture_fps": round(capture, 3), "processed_fps": round(processed, 3), "frames": s.frames,
            "skipped": s.skipped, "stale": s.stale, "source_errors": s.errors, "connected": connected,
            "queue_age_ms_p50": round(queue_p50, 3), "queue_age_ms_p99": round(queue_p99, 3),
            "e2e_ms_p50": round(p50, 3), "e2e_ms_p95": round(p50 * 1.4, 3), "e2e_ms_p99": round(p50 * 1.8, 3),
        }
        for key, value in figures.items():
            STREAM_BY_NAME[key].check(value)  # the simulator never sends what an agent could not
        return figures
