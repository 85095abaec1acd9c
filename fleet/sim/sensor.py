"""A simulated sensor device: anomaly scores per window, the k-of-n alert rule, and the figures an agent reports.

Pure: a seeded random source per device, no I/O; the runner calls `tick` once per telemetry report. Behaviours
(like the frame ones, 'new version' is any version above the one the device started on):
`normal` scores well under the threshold (log-normal, about 0.1% of windows over it); `faulty` has an injected
fault every FAULT_EVERY windows for FAULT_WINDOWS windows (scores 2-6x the threshold), so it alerts once per fault
and clears after; `drifting` scores 1.8x higher on a new version (its score distribution moves); `broken_threshold`
ships a new version whose threshold is a fifth of the calibrated one, so most windows are over it and it alerts.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from fleet.sim.mix import parse_shares, spread
from shared import score_bins
from shared.metrics import PERCENTILES
from shared.percentiles import percentiles

SensorBehaviour = Literal["normal", "faulty", "drifting", "broken_threshold"]
SENSOR_BEHAVIOURS: tuple[SensorBehaviour, ...] = get_args(SensorBehaviour)
CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
THRESHOLD = 1.0
NORMAL_MEDIAN, NORMAL_SIGMA = 0.35, 0.35
FAULT_EVERY, FAULT_WINDOWS = 120, 20
DRIFT_FACTOR, BROKEN_THRESHOLD_FACTOR = 1.8, 0.2
K, N = 3, 5


def parse_sensor_mix(text: str) -> dict[SensorBehaviour, float]:
    """'normal=0.8,faulty=0.2' -> shares; the rest of 1.0 is 'normal'. SimulatorError naming the bad part."""
    return parse_shares(text, SENSOR_BEHAVIOURS, "normal", "sensor behaviour")


def assign_sensor(mix: dict[SensorBehaviour, float], n: int) -> list[SensorBehaviour]:
    """Deterministic sensor behaviour per device index: exact counts by largest remainder, spread across the fleet."""
    return spread(mix, SENSOR_BEHAVIOURS, n, seed=n + 1)


@dataclass
class SensorSim:
    """Window scores, alerts and figures of one simulated sensor device."""

    behaviour: SensorBehaviour
    seed: str
    window_rate: float = 4.0
    stream: str = "sensor_mqtt:sim/imu"
    windows: int = 0
    alerts_fired: int = 0
    _rng: random.Random = field(default_factory=random.Random)
    _recent: deque[bool] = field(default_factory=lambda: deque(maxlen=N))
    _alert: dict[str, Any] | None = None
    _under: int = 0
    _carry: float = 0.0

    def __post_init__(self) -> None:
        self._rng = random.Random(f"sensor:{self.seed}")

    def threshold(self, new_version: bool) -> float:
        """The threshold this device's served version compares with."""
        broken = new_version and self.behaviour == "broken_threshold"
        return THRESHOLD * (BROKEN_THRESHOLD_FACTOR if broken else 1.0)

    def _score(self, new_version: bool) -> float:
        score = NORMAL_MEDIAN * self._rng.lognormvariate(0.0, NORMAL_SIGMA)
        if self.behaviour == "faulty" and self.windows % FAULT_EVERY >= FAULT_EVERY - FAULT_WINDOWS:
            score = THRESHOLD * self._rng.uniform(2.0, 6.0)
        if new_version and self.behaviour == "drifting":
            score *= DRIFT_FACTOR
        return score * THRESHOLD

    def tick(self, new_version: bool, interval_s: float, now_ms: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """One telemetry interval: (figures named as in shared.metrics, alert event bodies without envelope)."""
        due = self.window_rate * interval_s + self._carry
        count = int(due)
        self._carry = due - count
        threshold = self.threshold(new_version)
        scores, events = [], []
        for i in range(count):
            score = self._score(new_version)
            scores.append(score)
            at_ms = now_ms - int((count - 1 - i) * 1000 / self.window_rate)
            event = self._rule(score, threshold, at_ms)
            if event is not None:
                events.append(event)
            self.windows += 1
        figures: dict[str, float] = {
            "sensor_window_rate": count / interval_s if interval_s > 0 else 0.0, "sensor_input_refused": 0.0,
            "anomaly_threshold": threshold, "anomaly_windows_over": float(sum(s > threshold for s in scores)),
            "anomaly_alerts": float(self.alerts_fired), "anomaly_alerts_active": float(self._alert is not None),
        }
        if scores:
            for p, v in percentiles(scores, PERCENTILES).items():
                figures[f"anomaly_score_p{int(p)}"] = float(v)
            # What the rollout's sensor gates compare (edge.sensor.figures reports the same on an agent).
            figures.update(score_bins.counts(scores, threshold))
            figures["anomaly_alert_rate"] = 1000.0 * figures["anomaly_windows_over"] / len(scores)
        return figures, events

    def _rule(self, score: float, threshold: float, at_ms: int) -> dict[str, Any] | None:
        over = score > threshold
        self._recent.append(over)
        if self._alert is None:
            if sum(self._recent) < K:
                return None
            self.alerts_fired += 1
            self._under = 0
            self._alert = {"alert_id": f"{at_ms}-{self.alerts_fired}", "started_ms": at_ms, "peak_score": score,
                           "channels": self._channels(score)}
            return self._event(self._alert, "new", score, threshold, None)
        self._alert["peak_score"] = max(self._alert["peak_score"], score)
        self._under = 0 if over else self._under + 1
        if self._under < N:
            return None
        event = self._event(self._alert, "end", score, threshold, at_ms)
        self._alert = None
        self._recent.clear()
        return event

    def _channels(self, score: float) -> list[dict[str, Any]]:
        picks = self._rng.sample(CHANNELS, 3)
        return [{"channel": c, "error": score / (i + 1)} for i, c in enumerate(picks)]

    def _event(self, alert: dict[str, Any], kind: str, score: float, threshold: float,
               end_ms: int | None) -> dict[str, Any]:
        return {
            "type": kind, "alert_id": alert["alert_id"], "stream": self.stream, "score": score,
            "peak_score": max(alert["peak_score"], score), "threshold": threshold,
            "channels": alert["channels"], "windows_over": sum(self._recent), "k": K, "n": N,
            "started_ms": alert["started_ms"], "end_ms": end_ms, "window": self.windows,
        }

