"""Per-telemetry-window figures of a sensor model: score quantiles and bins with the threshold, alerts, windows/s.

Pure: the caller feeds each window's score and the tracker's alert counts, and asks for the figures once per
telemetry report (which starts the next window). Names are rows of shared/metrics.py.
"""

from __future__ import annotations

import math

from shared import score_bins
from shared.metrics import MAX_ANOMALY_SCORE, PERCENTILES
from shared.percentiles import percentiles


class SensorFigures:
    """Scores of the current telemetry window and counters since boot."""

    def __init__(self, max_samples: int = 65_536) -> None:
        self.max_samples = max_samples
        self.windows = 0
        # Windows scored in the telemetry window the last report closed.
        self.last_count = 0
        self._scores: list[float] = []
        self._over = 0
        self._seen = 0

    def add(self, score: float, over: bool) -> None:
        """One scored window (finite scores only; a NaN never reaches a quantile)."""
        self.windows += 1
        self._seen += 1
        self._over += int(over)
        if math.isfinite(score) and len(self._scores) < self.max_samples:
            self._scores.append(min(max(score, 0.0), MAX_ANOMALY_SCORE))

    def report(self, elapsed_s: float, threshold: float | None, active_alerts: int, alerts_fired: int,
               input_refused: int) -> dict[str, float]:
        """Figures for one telemetry report over `elapsed_s` seconds; the window's scores start afresh."""
        out: dict[str, float] = {
            "sensor_window_rate": self._seen / elapsed_s if elapsed_s > 0 else 0.0,
            "sensor_input_refused": float(input_refused),
        }
        if threshold is not None:
            out["anomaly_threshold"] = min(threshold, MAX_ANOMALY_SCORE)
            out["anomaly_windows_over"] = float(self._over)
            out["anomaly_alerts"] = float(alerts_fired)
            out["anomaly_alerts_active"] = float(active_alerts)
            if self._scores:
                for p, v in percentiles(self._scores, PERCENTILES).items():
                    out[f"anomaly_score_p{int(p)}"] = float(v)
                # The score distribution in threshold units, which rollout gates compare across model versions.
                out.update(score_bins.counts(self._scores, threshold))
            if self._seen:
                out["anomaly_alert_rate"] = 1000.0 * self._over / self._seen
        self.last_count = self._seen
        self._scores, self._over, self._seen = [], 0, 0
        return out
