"""What the agent holds while it serves a detector: tracking, object events, snapshots and detection figures.

Threads: the results thread calls on_frame; the telemetry thread calls metrics/class_counts/zone_counts; a
set-config or a model change calls reconfigure/new_model. One lock keeps them apart (it is held for the few
milliseconds one frame's association takes).

Wiring (agent): build one in Agent.__init__ as DetectionService(cfg.detection, self.link, self.topics,
self.envelopes); on the results thread, for each result of a detection model, call
on_frame(result.detections, result.index, result.captured_at, result.image) in frame order (image only when
cfg.detection.snapshots.enabled); call new_model(version) when results start coming from another version, finish()
at stop, reconfigure(new.detection) from a live-config applier; report metrics(), class_counts() and zone_counts()
in telemetry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from edge.detection.config import DetectionConfig
from edge.detection.emitter import ObjectEventEmitter
from edge.detection.objects import DetectionLike
from edge.detection.processor import ObjectProcessor
from edge.detection.quality import DetectionQualityWindow
from edge.detection.snapshot_store import SnapshotStore
from edge.errors import SnapshotError
from edge.link.base import Link
from edge.link.lanes import SNAPSHOT_LANE, LaneBudget
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload, ObjectTopics
from shared.topics import DeviceTopics

log = logging.getLogger(__name__)


class DetectionService:
    """Tracked objects of one camera published as object events and snapshots through the link's outbox."""

    def __init__(
        self,
        cfg: DetectionConfig,
        link: Link,
        topics: DeviceTopics,
        envelopes: EnvelopeFactory,
        model_version: int | None = None,
        *,
        wall: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._lock = threading.Lock()
        self._link, self._topics, self._envelopes = link, ObjectTopics(topics), envelopes
        self._wall, self._perf = wall, perf
        self.quality = DetectionQualityWindow()
        self._model_version = model_version
        self._cfg = cfg
        self._processor, self._emitter = self._build(cfg, model_version)

    @property
    def cfg(self) -> DetectionConfig:
        """The settings in force."""
        return self._cfg

    def frame_time_ms(self, captured_at: float) -> int:
        """Unix ms of a frame whose capture time is on the perf_counter clock (as sources stamp frames)."""
        return max(0, int((self._wall() - (self._perf() - captured_at)) * 1000))

    def on_frame(
        self, detections: Sequence[DetectionLike], frame: int, captured_at: float, image: np.ndarray | None = None
    ) -> list[ObjectEventPayload]:
        """Track one frame's detections and queue the events and snapshots it causes; returns the events."""
        t_ms = self.frame_time_ms(captured_at)
        self.quality.add(detections)  # every box the model reported, before filters: the model's quality
        with self._lock:
            return self._emitter.publish(self._processor.process(detections, frame, t_ms, image))

    def finish(self) -> list[ObjectEventPayload]:
        """End every followed object (the stream stopped)."""
        with self._lock:
            return self._emitter.publish(self._processor.finish(int(self._wall() * 1000)))

    def reconfigure(self, cfg: DetectionConfig) -> list[ObjectEventPayload]:
        """Take new settings: followed objects end under the old ones, tracking restarts under the new."""
        with self._lock:
            if cfg == self._cfg:
                return []
            ended = self._emitter.publish(self._processor.finish(int(self._wall() * 1000)))
            self._cfg = cfg
            self._processor, self._emitter = self._build(cfg, self._model_version)
            return ended

    def new_model(self, version: int | None) -> list[ObjectEventPayload]:
        """A different model serves: its boxes are not the old model's tracks, so objects end and tracking restarts."""
        with self._lock:
            ended = self._emitter.publish(self._processor.finish(int(self._wall() * 1000)))
            self._model_version = version
            self._processor, self._emitter = self._build(self._cfg, version)
            return ended

    def metrics(self) -> dict[str, float]:
        """Close the quality window (telemetry thread)."""
        return self.quality.metrics()

    def class_counts(self) -> dict[str, int]:
        """Label -> detections in the window metrics() closed last."""
        return self.quality.class_counts()

    def zone_counts(self) -> dict[str, int]:
        """{zone: objects, zone/label: objects} now, every configured zone present (telemetry `zone_counts`)."""
        with self._lock:
            totals, per_label = self._processor.zone_counts()
        return {**totals, **per_label}

    def _build(self, cfg: DetectionConfig, version: int | None) -> tuple[ObjectProcessor, ObjectEventEmitter]:
        snaps = cfg.snapshots
        store = None
        if snaps.enabled:
            try:
                store = SnapshotStore(snaps.dir, int(snaps.disk_budget_mb * 1024 * 1024), snaps.max_files)
            except SnapshotError as exc:
                log.warning("snapshots are published but not kept on disk: %s", exc)
        processor = ObjectProcessor(cfg, version)
        budget = LaneBudget(SNAPSHOT_LANE, snaps.outbox_max_count, int(snaps.outbox_max_mb * 1024 * 1024))
        emitter = ObjectEventEmitter(self._link, self._topics, self._envelopes, store, cfg.events.enabled, budget)
        return processor, emitter
