"""Gate figures of the sensor tasks: macro F1 for classification; AUROC and false-alarm rate for anomaly."""

from __future__ import annotations

import numpy as np

from cloud.sensor.calibration import over_threshold


def macro_f1(predicted: np.ndarray, labels: np.ndarray, classes: int) -> float:
    """Unweighted mean of per-class F1 over classes present in labels or predictions."""
    p, y = np.asarray(predicted), np.asarray(labels)
    f1s = []
    for c in range(classes):
        tp = int(np.sum((p == c) & (y == c)))
        fp = int(np.sum((p == c) & (y != c)))
        fn = int(np.sum((p != c) & (y == c)))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def auroc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Probability a random anomalous window scores above a random normal one (ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(is_anomaly, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError(f"AUROC needs both normal and anomalous windows, got {neg} and {pos}")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties (1-based), the Mann-Whitney U form of the AUROC.
    i = 0
    while i < s.size:
        j = i
        while j + 1 < s.size and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - pos * (pos + 1) / 2.0
    return float(u / (pos * neg))


def false_alarm_rate(normal_scores: np.ndarray, threshold: float) -> float:
    """Share of normal windows above the threshold."""
    s = np.asarray(normal_scores)
    return float(over_threshold(s, threshold).mean()) if s.size else 0.0


def detection_rate(anomalous_scores: np.ndarray, threshold: float) -> float:
    """Share of anomalous windows above the threshold."""
    s = np.asarray(anomalous_scores)
    return float(over_threshold(s, threshold).mean()) if s.size else 0.0
