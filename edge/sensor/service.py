"""Anomaly scores of one sensor stream become k-of-n alerts on sensor/alerts (through the link's outbox) and the
sensor figures of each telemetry report. The agent configures it per served model (threshold, channel names)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from edge.link.base import Link
from edge.sensor.alerts import AlertEvent, AlertTracker, alert_threshold
from edge.sensor.config import SensorConfig
from edge.sensor.figures import SensorFigures
from edge.telemetry import EnvelopeFactory
from shared.manifest import Manifest, Variant
from shared.sensor_events import SensorTopics
from shared.task_contract import AnomalyHeadSpec
from shared.tasks.anomaly import AnomalyScore
from shared.topics import DeviceTopics

log = logging.getLogger(__name__)


class AnomalyService:
    """configure() per model from any thread; on_window()/finish() on the results thread; metrics() on telemetry's."""

    def __init__(self, cfg: SensorConfig, link: Link, topics: DeviceTopics, envelopes: EnvelopeFactory,
                 refused: Callable[[], int] = lambda: 0, *, wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._link, self._topic, self._envelopes = link, SensorTopics(topics).alerts, envelopes
        self._refused, self._wall, self._clock = refused, wall, clock
        self._lock = threading.Lock()
        self.figures = SensorFigures()
        self._tracker: AlertTracker | None = None
        self._version: int | None = None
        self._stream = "sensor"
        self._last: tuple[AnomalyScore, int] | None = None
        self._fired_before = 0  # alerts of earlier models' trackers: the counter never goes back
        self._report_at = clock()
        self._served: tuple[Manifest, Variant, str] | None = None

    def configure(self, manifest: Manifest, variant: Variant, stream: str) -> None:
        """The served model: an anomaly model's threshold (config, else the variant's, else the head's) and channel
        names; any other model stops the alert rule. An alert open under the previous model ends."""
        head = manifest.head
        tracker = None
        if isinstance(head, AnomalyHeadSpec) and manifest.window is not None:
            threshold = alert_threshold(self.cfg.alerts, variant.metrics.threshold, head.threshold)
            names = [c.name for c in manifest.window.channels]
            tracker = AlertTracker(self.cfg.alerts, stream, names, threshold)
        with self._lock:
            event, old_version = self._close(), self._version
            if self._tracker is not None:
                self._fired_before += self._tracker.fired
            self._last = None
            self._tracker = tracker
            self._served = (manifest, variant, stream) if tracker is not None else None
            self._version, self._stream = manifest.version, stream
        if event is not None:
            self._publish(event, old_version)
        if tracker is not None:
            log.info("anomaly alerts for %s v%d on %s: %d of %d windows over %.6g", manifest.name, manifest.version,
                     stream, self.cfg.alerts.k, self.cfg.alerts.n, tracker.threshold)

    def reconfigure(self, cfg: SensorConfig) -> None:
        """New settings (live config): the served model's alert rule restarts under them."""
        self.cfg = cfg
        served = self._served
        if served is not None:
            self.configure(*served)

    @property
    def threshold(self) -> float | None:
        """The threshold in force (None before an anomaly model is configured)."""
        tracker = self._tracker
        return None if tracker is None else tracker.threshold

    def on_window(self, result: AnomalyScore, window: int) -> AlertEvent | None:
        """One scored window: counted for telemetry; an alert event is published when one starts or ends."""
        with self._lock:
            tracker = self._tracker
            if tracker is None:
                return None
            over = result.score > tracker.threshold
            self.figures.add(result.score, over)
            self._last = (result, window)
            event = tracker.update(result, window, self._wall())
        if event is not None:
            self._publish(event)
        return event

    def finish(self) -> None:
        """The stream ended or another task's model serves: an open alert ends."""
        with self._lock:
            event = self._close()
            self._last = None
        if event is not None:
            self._publish(event)

    def _close(self) -> AlertEvent | None:
        if self._tracker is None or self._last is None:
            return None
        result, window = self._last
        return self._tracker.close(result, window, self._wall())

    def _publish(self, event: AlertEvent, version: int | None = None) -> None:
        payload = event.payload(self._envelopes.next().model_dump(), self._version if version is None else version)
        self._link.publish_json(self._topic, payload)
        log.info("anomaly alert %s %s on %s: score %.4g, threshold %.4g, channels %s", event.alert_id, event.type,
                 event.stream, event.score, event.threshold, ", ".join(name for name, _ in event.channels))

    def metrics(self) -> dict[str, float]:
        """Sensor figures of the telemetry window since the last call (threshold ones only while a model serves)."""
        now = self._clock()
        with self._lock:
            elapsed, self._report_at = now - self._report_at, now
            tracker = self._tracker
            return self.figures.report(
                elapsed, None if tracker is None else tracker.threshold,
                int(tracker is not None and tracker.active),
                self._fired_before + (0 if tracker is None else tracker.fired), self._refused(),
            )
