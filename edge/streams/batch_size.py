"""The batch size a served model runs at: the largest measured size whose latency stays within the budget.

Measured once per served model on the frame thread before its first batch (a runtime's single infer request may
not be shared with another thread), with zero inputs of the model's own shape: sizes 1, 2, 4, ... up to the limit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from edge.batch_figures import largest_batch_within, recorded_batch_ms
from edge.hot_swap import ServingModel
from edge.task_decode import RawOutput

RUNS = 5


def candidate_sizes(limit: int) -> list[int]:
    """1, 2, 4, ... up to `limit`, and `limit` itself."""
    sizes, size = [], 1
    while size < limit:
        sizes.append(size)
        size *= 2
    return [*sizes, limit]


def choose_batch_size(latency_ms: Mapping[int, float], budget_ms: float) -> int:
    """The largest size whose latency is within the budget; 1 when none is (a frame is never refused)."""
    return largest_batch_within(latency_ms, budget_ms) or 1


def measure(
    serving: ServingModel,
    sizes: list[int],
    runs: int = RUNS,
    clock: Callable[[], float] = time.perf_counter,
    each: Callable[[Sequence[np.ndarray]], list[RawOutput]] | None = None,
) -> dict[int, float]:
    """Median latency (ms) of one batched run at each size (with `each`: that many frames in flight at once, as the
    runner runs them), after one warm-up run per size; the figures measured at install (edge/batch_figures.py)
    when they cover every size."""
    if (recorded := recorded_batch_ms(serving.model, sizes)) is not None:
        return recorded
    shape = serving.preprocessor.output_shape
    out: dict[int, float] = {}
    for size in sizes:
        run = _runner(serving, size, shape[1:], each)
        run()
        times = []
        for _ in range(runs):
            start = clock()
            run()
            times.append((clock() - start) * 1000.0)
        out[size] = statistics.median(times)
    return out


def _runner(
    serving: ServingModel,
    size: int,
    frame_shape: tuple[int, ...],
    each: Callable[[Sequence[np.ndarray]], list[RawOutput]] | None,
) -> Callable[[], object]:
    """One run of `size` zero frames: a stacked batch, or (each) that many single frames in flight."""
    if each is not None:
        frames = [np.zeros((1, *frame_shape), dtype=np.float32) for _ in range(size)]
        return lambda: each(frames)
    batch = np.zeros((size, *frame_shape), dtype=np.float32)
    return lambda: serving.infer(batch)
