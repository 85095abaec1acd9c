"""Model-quality figures per telemetry window, counted on the results thread: the rollout gates' raw material.

The results thread adds one (label, score) per result under a lock held for a few dict operations; the telemetry
thread takes the whole window at report time and starts a new one, so each report covers exactly the results
since the previous report. The figures and the per-class counts of one report come from the same window.
"""

from __future__ import annotations

import threading

LOW_CONFIDENCE = 0.5


class QualityWindow:
    """conf_mean, low_conf_share, results_window and class_counts over the results since the last report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = 0
        self._score_sum = 0.0
        self._low = 0
        self._counts: dict[str, int] = {}
        self._reported: dict[str, int] = {}

    def add(self, label: str, score: float) -> None:
        """Count one result (results thread)."""
        with self._lock:
            self._n += 1
            self._score_sum += score
            if score < LOW_CONFIDENCE:
                self._low += 1
            self._counts[label] = self._counts.get(label, 0) + 1

    def metrics(self) -> dict[str, float]:
        """Close the window: its figures now; its class counts from class_counts() until the next close."""
        with self._lock:
            n, total, low, counts = self._n, self._score_sum, self._low, self._counts
            self._n, self._score_sum, self._low, self._counts = 0, 0.0, 0, {}
            self._reported = counts
        out = {"results_window": float(n)}
        if n:
            out["conf_mean"] = total / n
            out["low_conf_share"] = low / n
        return out

    def class_counts(self) -> dict[str, int]:
        """Top-1 label -> results of the window metrics() closed last."""
        with self._lock:
            return dict(self._reported)
