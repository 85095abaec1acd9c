"""The anomaly threshold: a configured percentile of held-out normal windows' scores, kept out of the graph."""

from __future__ import annotations

import numpy as np

from cloud.errors import ExportError


def window_scores(channel_errors: np.ndarray) -> np.ndarray:
    """Score per window: the mean of its per-channel errors (float64), as the device's anomaly head computes it."""
    errors = np.asarray(channel_errors, dtype=np.float64)
    if errors.ndim != 2:
        raise ExportError(f"anomaly outputs are per-channel errors [windows, channels], got shape {errors.shape}")
    return errors.mean(axis=1)


def calibrate_threshold(normal_scores: np.ndarray, percentile: float) -> float:
    """The percentile (linear interpolation) of normal scores: about (100 - percentile)% of normal windows exceed it."""
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ExportError("threshold calibration needs scores of held-out normal windows; the split has none")
    if not np.all(np.isfinite(scores)):
        raise ExportError("threshold calibration got NaN or infinite scores from the model")
    if not 0.0 < percentile < 100.0:
        raise ExportError(f"threshold percentile must be between 0 and 100, got {percentile}")
    return float(np.percentile(scores, percentile))


def over_threshold(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Which windows alarm: strictly above the threshold."""
    return np.asarray(scores, dtype=np.float64) > threshold
