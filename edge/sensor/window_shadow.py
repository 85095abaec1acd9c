"""The shadow check on sensor windows: the served anomaly model and the incumbent judged on the same windows.

edge.shadow runs the incumbent (the version the served one replaced) on every Nth window; this module judges the
pair in sensor terms. A window agrees when both models reach the same verdict, each at the threshold it serves with
(the config's override, else the variant's calibrated one, else the head's: as alerts do), so a version whose
threshold is broken disagrees even when its scores are the incumbent's. The scores' distance, in units of the
incumbent's threshold, is reported as shadow_score_diff for the telemetry window.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge.hot_swap import ServingModel
from edge.sensor.alerts import alert_threshold
from edge.sensor.config import AlertConfig
from shared.metrics import MAX_ANOMALY_SCORE
from shared.task_contract import AnomalyHeadSpec
from shared.tasks.anomaly import AnomalyScore


@dataclass(frozen=True)
class Thresholds:
    """What each model of a compared pair alerts above: the incumbent's (reference) and the served one's."""

    reference: float
    served: float


def served_threshold(model: ServingModel, alerts: AlertConfig) -> float | None:
    """The threshold an anomaly model alerts above on this device; None for another task or without a usable one."""
    head = model.manifest.head
    if not isinstance(head, AnomalyHeadSpec):
        return None
    try:
        return alert_threshold(alerts, model.variant.metrics.threshold, head.threshold)
    except ValueError:
        return None


class WindowShadow:
    """thresholds()/compare() on the shadow thread; metrics() on the telemetry thread closes the window."""

    def __init__(self, alerts: Callable[[], AlertConfig], served: Callable[[], ServingModel | None]) -> None:
        # Read per window, so a live change of sensor.alerts applies to the next compared window.
        self._alerts = alerts
        self._served = served
        self._lock = threading.Lock()
        self._windows = 0
        self._diff = 0.0

    def thresholds(self, shadow: ServingModel, version: int) -> Thresholds | None:
        """Both thresholds when the incumbent can score the served model's windows of `version` (the same window
        recipe, both anomaly models); None: this window is not compared."""
        served = self._served()
        if served is None or served.version != version or shadow.manifest.window is None:
            return None
        if shadow.manifest.window != served.manifest.window:
            return None  # another recipe: the served model's input tensor means something else to the incumbent
        alerts = self._alerts()
        ref, new = served_threshold(shadow, alerts), served_threshold(served, alerts)
        return None if ref is None or new is None else Thresholds(ref, new)

    def compare(self, reference: AnomalyScore, served: AnomalyScore, thresholds: Thresholds) -> tuple[float, float]:
        """(agreeing, compared) for one window, as the shadow check counts them; the score distance is kept."""
        same = (reference.score > thresholds.reference) == (served.score > thresholds.served)
        diff = min(abs(served.score - reference.score) / thresholds.reference, MAX_ANOMALY_SCORE)
        with self._lock:
            self._windows += 1
            self._diff += diff
        return (1.0 if same else 0.0), 1.0

    def metrics(self) -> dict[str, float]:
        """Close the window: the mean score distance over its compared windows (nothing when none were)."""
        with self._lock:
            windows, diff = self._windows, self._diff
            self._windows, self._diff = 0, 0.0
        return {"shadow_score_diff": diff / windows} if windows else {}
