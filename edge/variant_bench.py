"""Optional install-time micro-benchmark: time candidate variants on this device and keep the fastest."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from edge.backends.base import LoadedModel

WARMUP_RUNS = 3
TIMED_RUNS = 20


def median_latency_ms(
    loaded: LoadedModel,
    sample: np.ndarray,
    runs: int = TIMED_RUNS,
    warmup: int = WARMUP_RUNS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median wall time of one batch-1 inference, in ms, after a few warm-up runs."""
    for _ in range(warmup):
        loaded.run(sample)
    times = []
    for _ in range(runs):
        start = clock()
        loaded.run(sample)
        times.append((clock() - start) * 1000.0)
    return float(statistics.median(times))


def fastest(latencies: dict[str, float]) -> str:
    """Key of the smallest latency; ties go to the first key (the preferred variant, as callers pass them)."""
    if not latencies:
        raise ValueError("no latencies to compare")
    return min(latencies, key=lambda k: latencies[k])
