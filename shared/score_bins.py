"""Fixed bins of an anomaly score in units of the threshold the device serves with, so fleets can compare models.

Devices count each telemetry window's scores into these bins; the rollout gate compares the canary cohort's bin
mix with the control's (a PSI). Raw scores of two models need not share a scale (a retrained autoencoder), but a
score over its own calibrated threshold does: a good model puts most normal windows well under 1, and a model whose
threshold is broken moves them all into the top bins. Same bins on every device and in the fleet: defined once here.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable

# Upper edges (score / threshold) of every bin but the last, which is open: finer below 1, where normal data lies.
EDGES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 1.5, 2.0, 4.0)
PREFIX = "anomaly_score_bin"
NAMES: tuple[str, ...] = tuple(f"{PREFIX}{i}" for i in range(len(EDGES) + 1))


def bounds(index: int) -> tuple[float, float]:
    """The (low, high) of one bin in threshold units; the last bin's high is infinity."""
    low = 0.0 if index == 0 else EDGES[index - 1]
    high = EDGES[index] if index < len(EDGES) else math.inf
    return low, high


def span(index: int) -> str:
    """One bin's range in words, for titles and descriptions (e.g. '0.2-0.4x', '4x+')."""
    low, high = bounds(index)
    return f"{low:g}x+" if math.isinf(high) else f"{low:g}-{high:g}x"


def bin_of(score: float, threshold: float) -> int:
    """The bin of one finite score; bins are (low, high], so a score equal to the threshold is not over it, as alerts
    count."""
    if threshold <= 0 or not math.isfinite(threshold):
        raise ValueError(f"score bins need a positive finite threshold, got {threshold}")
    return bisect.bisect_left(EDGES, max(score, 0.0) / threshold)


def counts(scores: Iterable[float], threshold: float) -> dict[str, float]:
    """Windows per bin (every bin named, empty ones 0) of the finite scores."""
    out = dict.fromkeys(NAMES, 0.0)
    for s in scores:
        if math.isfinite(s):
            out[NAMES[bin_of(s, threshold)]] += 1.0
    return out
