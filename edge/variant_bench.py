"""Install-time micro-benchmark of one loaded candidate: warm-up, then timed batch-1 runs within a time budget."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge.backends.base import LoadedModel
from shared.percentiles import nearest_rank

WARMUP_RUNS = 3
TIMED_RUNS = 30
BUDGET_S = 1.0


def latency_samples_ms(
    loaded: LoadedModel,
    sample: np.ndarray,
    runs: int = TIMED_RUNS,
    warmup: int = WARMUP_RUNS,
    budget_s: float = BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Wall times (ms) of up to `runs` batch-1 inferences after warm-up; stops early once `budget_s` is spent."""
    for _ in range(warmup):
        loaded.run(sample)
    times: list[float] = []
    deadline = clock() + budget_s
    while len(times) < runs:
        start = clock()
        loaded.run(sample)
        end = clock()
        times.append((end - start) * 1000.0)
        if end >= deadline:
            break
    return times


def p50_p99(times: list[float]) -> tuple[float, float]:
    """Median and 99th percentile by nearest rank (the agent's own percentile definition)."""
    ordered = sorted(times)
    return nearest_rank(ordered, 50), nearest_rank(ordered, 99)

