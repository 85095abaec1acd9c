"""Batch-1 latency figures (p50/p99 in ms) for the manifest and the benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from cloud.errors import ExportError
from cloud.ort_session import ORT_ERRORS
from shared.percentiles import percentiles


@dataclass(frozen=True)
class LatencyStats:
    """Observed batch-1 latencies."""

    p50_ms: float
    p99_ms: float
    runs: int
    threads: int


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float]:
    """Nearest-rank p50 and p99 in ms (shared.percentiles, as devices report them): observed latencies."""
    if not seconds:
        raise ExportError("no latency samples to summarize")
    figures = percentiles((s * 1000.0 for s in seconds), (50, 99))
    return figures[50], figures[99]


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Wall time of each of `runs` calls after `warmup` untimed ones (allocations, lazy init)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def ort_latency(
    session: ort.InferenceSession, sample: np.ndarray, runs: int, threads: int, warmup: int = 10
) -> LatencyStats:
    """p50/p99 of one batch-1 input through a session opened with `threads` intra-op threads."""
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(sample[:1], dtype=np.float32)
    try:
        return call_latency(lambda: session.run(None, {name: x}), runs, threads, warmup)
    except ORT_ERRORS as exc:
        raise ExportError(f"ONNX Runtime failed while timing: {exc}") from exc


def call_latency(fn: Callable[[], object], runs: int, threads: int, warmup: int = 10) -> LatencyStats:
    """p50/p99 of `runs` calls of a batch-1 inference (any runtime), after `warmup` untimed ones."""
    p50, p99 = percentiles_ms(time_calls(fn, runs, warmup))
    return LatencyStats(p50, p99, runs, threads)
