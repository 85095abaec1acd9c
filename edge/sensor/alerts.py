"""Anomaly alerts from window scores: fire when k of the last n windows exceed the threshold, end when they clear.

Pure: the caller passes each window's score and time (stream time, seconds); no clock, no I/O. After an alert ends
the stream is quiet for `cooldown_s`, and the windows seen before the end no longer count towards a new one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from edge.sensor.config import AlertConfig
from shared.sensor_events import MAX_SCORE, AnomalyAlertPayload, ChannelContribution
from shared.tasks.anomaly import AnomalyScore


def alert_threshold(cfg: AlertConfig, variant_threshold: float | None, head_threshold: float) -> float:
    """The threshold alerts compare with: the config's override, else the variant's calibrated one, else the head's."""
    for value in (cfg.threshold, variant_threshold, head_threshold):
        if value is not None and math.isfinite(value) and value > 0:
            return float(value)
    raise ValueError(f"no usable anomaly threshold (variant {variant_threshold}, head {head_threshold})")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert lifecycle step, before it becomes a payload."""

    type: Literal["new", "end"]
    alert_id: str
    stream: str
    score: float
    peak_score: float
    threshold: float
    channels: tuple[tuple[str, float], ...]
    windows_over: int
    k: int
    n: int
    started_s: float
    end_s: float | None
    window: int

    def payload(self, envelope: dict[str, object], model_version: int | None) -> AnomalyAlertPayload:
        """The wire form; scores clipped to the payload's bound so a runaway error still reports."""
        clip = lambda v: min(max(v, 0.0), MAX_SCORE)  # noqa: E731 - local one-liner
        return AnomalyAlertPayload.model_validate({
            **envelope, "type": self.type, "alert_id": self.alert_id, "stream": self.stream,
            "score": clip(self.score), "peak_score": clip(self.peak_score), "threshold": clip(self.threshold),
            "channels": [ChannelContribution(channel=name, error=clip(err)) for name, err in self.channels],
            "windows_over": self.windows_over, "k": self.k, "n": self.n,
            "started_ms": int(self.started_s * 1000),
            "end_ms": None if self.end_s is None else int(self.end_s * 1000),
            "window": self.window, "model_version": model_version,
        })


class AlertTracker:
    """The k-of-n rule with cooldown for one stream of window scores."""

    def __init__(self, cfg: AlertConfig, stream: str, channel_names: Sequence[str], threshold: float) -> None:
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"anomaly threshold must be positive and finite, got {threshold}")
        self.cfg = cfg
        self.stream = stream
        self.channel_names = list(channel_names)
        self.threshold = float(threshold)
        self.fired = 0
        self.ended = 0
        self._recent: deque[bool] = deque(maxlen=cfg.n)
        self._quiet_until = -math.inf
        self._active = False
        self._under_run = 0
        self._peak = 0.0
        self._worst: tuple[tuple[str, float], ...] = ()
        self._alert_id = ""
        self._started_s = 0.0

    @property
    def active(self) -> bool:
        """An alert is open on this stream."""
        return self._active

    def update(self, result: AnomalyScore, window: int, at_s: float) -> AlertEvent | None:
        """Feed one window's score; an AlertEvent when an alert starts or ends with it."""
        over = result.score > self.threshold
        self._recent.append(over)
        if self._active:
            if result.score > self._peak:
                self._peak = result.score
                self._worst = self._channels(result)
            self._under_run = 0 if over else self._under_run + 1
            if self._under_run >= self.cfg.clear_after:
                return self._end(result, window, at_s)
            return None
        if sum(self._recent) >= self.cfg.k and at_s >= self._quiet_until:
            return self._start(result, window, at_s)
        return None

    def close(self, result: AnomalyScore, window: int, at_s: float) -> AlertEvent | None:
        """The stream ended or the model changed: an open alert ends with the last window seen."""
        return self._end(result, window, at_s) if self._active else None

    def _start(self, result: AnomalyScore, window: int, at_s: float) -> AlertEvent:
        self._active = True
        self.fired += 1
        self._under_run = 0
        self._peak = result.score
        self._worst = self._channels(result)
        self._started_s = at_s
        self._alert_id = f"{int(at_s * 1000)}-{self.fired}"
        return self._event("new", result, window, None)

    def _end(self, result: AnomalyScore, window: int, at_s: float) -> AlertEvent:
        event = self._event("end", result, window, at_s)
        self._active = False
        self.ended += 1
        self._recent.clear()
        self._quiet_until = at_s + self.cfg.cooldown_s
        return event

    def _event(self, kind: Literal["new", "end"], result: AnomalyScore, window: int, end_s: float | None) -> AlertEvent:
        return AlertEvent(
            kind, self._alert_id, self.stream, result.score, max(self._peak, result.score), self.threshold,
            self._worst, sum(self._recent), self.cfg.k, self.cfg.n, self._started_s, end_s, window,
        )

    def _channels(self, result: AnomalyScore) -> tuple[tuple[str, float], ...]:
        named = [
            (self.channel_names[i] if 0 <= i < len(self.channel_names) else f"ch{i}", err)
            for i, err in zip(result.channels, result.channel_errors, strict=False)
        ]
        return tuple(named[: self.cfg.top_channels])
