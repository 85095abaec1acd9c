"""The percentile definition every latency figure uses, on the device and in the cloud's gates: nearest rank.

The p-th percentile is the smallest sample with at least p% of the samples at or below it (numpy's
``method="inverted_cdf"``): every reported figure is a latency that really happened, and p99 of a small window
is its maximum rather than an interpolation between two frames. A manifest's build-time p99 and a device's
telemetry p99 are therefore the same statistic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0 < p <= 100) of ascending values by nearest rank."""
    if not sorted_values:
        raise ValueError("percentile of an empty window")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(p / 100 * len(sorted_values))
    return float(sorted_values[max(rank, 1) - 1])


def percentiles(values: Iterable[float], ps: Iterable[float]) -> dict[float, float]:
    """Nearest-rank percentiles of unordered values, sorted once; ValueError when there are none."""
    ordered = sorted(values)
    return {p: nearest_rank(ordered, p) for p in ps}
