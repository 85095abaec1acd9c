"""Anomaly scores of sensor streams become k-of-n alerts on sensor/alerts (through the link's outbox) and the
sensor figures of each telemetry report. The agent configures it per served model (threshold, channel names).

Each stream keeps its own alert rule state (created at its first window, dropped with the stream): one noisy
sensor never fires or clears another's alert, and its alerts carry its name.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from edge.link.base import Link
from edge.sensor.alerts import AlertEvent, AlertTracker, alert_threshold
from edge.sensor.config import SensorConfig
from edge.sensor.figures import SensorFigures
from edge.stream_ids import StreamIds
from edge.telemetry import EnvelopeFactory
from shared.manifest import Manifest, Variant
from shared.sensor_events import SensorTopics
from shared.streams import DEFAULT_STREAM
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
        # Per stream: its alert rule and its latest window (to close an open alert with).
        self._trackers: dict[str, AlertTracker] = {}
        self._last: dict[str, tuple[AnomalyScore, int]] = {}
        # The served model's rule: threshold and channel names (None: no anomaly model serves).
        self._rule: tuple[float, list[str]] | None = None
        self._version: int | None = None
        self._stream = "sensor"
        self._ids = StreamIds()  # alert id prefix per stream (edge.stream_ids)
        self._fired_before = 0  # alerts of dropped trackers: the counter never goes back
        self._report_at = clock()
        self._served: tuple[Manifest, Variant, str] | None = None
        # The model (`models:` name) whose anomaly head sets the rule; None: none, or the agent's one model.
        self.owner: str | None = None

    def configure(self, manifest: Manifest, variant: Variant, stream: str, model: str | None = None) -> None:
        """The served model: an anomaly model's threshold (config, else the variant's, else the head's) and channel
        names; any other model stops the alert rule. Alerts open under the previous model end. `stream` names the
        single source's windows (the stream 'default'); streams under `streams:` go by their own names.

        `model` names which of an agent's models (`models:`) switched: a model of another task that does not own
        the rule leaves it alone. None: the agent's one model, whose every switch sets or stops the rule."""
        head = manifest.head
        rule = None
        if isinstance(head, AnomalyHeadSpec) and manifest.window is not None:
            threshold = alert_threshold(self.cfg.alerts, variant.metrics.threshold, head.threshold)
            rule = (threshold, [c.name for c in manifest.window.channels])
        with self._lock:
            if rule is None and model is not None and model != self.owner:
                return
            self.owner = model if rule is not None else None
            events, old_version = self._close_all(), self._version
            self._rule = rule
            self._served = (manifest, variant, stream) if rule is not None else None
            self._version, self._stream = manifest.version, stream
        for event in events:
            self._publish(event, old_version)
        if rule is not None:
            log.info("anomaly alerts for %s v%d on %s: %d of %d windows over %.6g", manifest.name, manifest.version,
                     stream, self.cfg.alerts.k, self.cfg.alerts.n, rule[0])

    def reconfigure(self, cfg: SensorConfig) -> None:
        """New settings (live config): the served model's alert rule restarts under them."""
        self.cfg = cfg
        served = self._served
        if served is not None:
            self.configure(*served, model=self.owner)

    @property
    def threshold(self) -> float | None:
        """The threshold in force (None before an anomaly model is configured)."""
        rule = self._rule
        return None if rule is None else rule[0]

    @property
    def streams(self) -> list[str]:
        """Streams whose windows the rule follows now."""
        with self._lock:
            return list(self._trackers)

    def on_window(self, result: AnomalyScore, window: int, stream: str = DEFAULT_STREAM) -> AlertEvent | None:
        """One scored window of a stream: counted for telemetry; an alert event is published when one starts or
        ends on that stream."""
        with self._lock:
            tracker = self._tracker(stream)
            if tracker is None:
                return None
            over = result.score > tracker.threshold
            self.figures.add(result.score, over)
            self._last[stream] = (result, window)
            event = self._named(stream, tracker.update(result, window, self._wall()))
        if event is not None:
            self._publish(event)
        return event

    def finish(self) -> None:
        """The streams ended or another task's model serves: open alerts end."""
        with self._lock:
            events = self._close_all()
        for event in events:
            self._publish(event)

    def drop_stream(self, stream: str) -> None:
        """A removed stream: its open alert ends and its rule state goes."""
        with self._lock:
            event = self._close(stream)
            tracker = self._trackers.pop(stream, None)
            if tracker is not None:
                self._fired_before += tracker.fired
        if event is not None:
            self._publish(event)

    def _tracker(self, stream: str) -> AlertTracker | None:
        """The stream's rule state, created at its first window while an anomaly model serves (lock held)."""
        tracker = self._trackers.get(stream)
        if tracker is None and self._rule is not None:
            threshold, names = self._rule
            label = self._stream if stream == DEFAULT_STREAM else stream
            tracker = AlertTracker(self.cfg.alerts, label, names, threshold)
            self._trackers[stream] = tracker
            self._ids.prefix(stream)  # numbered in the order of their first window
        return tracker

    def _named(self, stream: str, event: AlertEvent | None) -> AlertEvent | None:
        """Alert ids are unique per device: a stream's own counter gets its number in front (not the default's)."""
        if event is None or stream == DEFAULT_STREAM:
            return event
        return replace(event, alert_id=self._ids.prefix(stream) + event.alert_id)

    def _close(self, stream: str) -> AlertEvent | None:
        tracker, last = self._trackers.get(stream), self._last.pop(stream, None)
        if tracker is None or last is None:
            return None
        result, window = last
        return self._named(stream, tracker.close(result, window, self._wall()))

    def _close_all(self) -> list[AlertEvent]:
        """End every stream's open alert and forget their rule state (lock held)."""
        events = [e for e in (self._close(name) for name in list(self._trackers)) if e is not None]
        self._fired_before += sum(t.fired for t in self._trackers.values())
        self._trackers.clear()
        self._last.clear()
        return events

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
            threshold = self.threshold
            trackers = self._trackers.values()
            return self.figures.report(
                elapsed, threshold, sum(int(t.active) for t in trackers),
                self._fired_before + sum(t.fired for t in trackers), self._refused(),
            )
