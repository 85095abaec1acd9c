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

Streams: each stream (camera) is tracked apart, in its own lane created at its first frame (its own tracker, zones,
object ids and events carrying its name); set_streams() gives streams their own settings (zones belong to a camera)
and drop_stream() ends a removed stream's objects. The single `source:` is the stream 'default', as before, its lane
kept ready from the start (single_source=False for an agent serving `streams:`, which has no such lane).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

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
from edge.stream_ids import StreamIds
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload, ObjectTopics
from shared.streams import DEFAULT_STREAM, zone_key
from shared.topics import DeviceTopics

log = logging.getLogger(__name__)


@dataclass
class _Lane:
    """One stream's tracking: the settings it runs under, its processor and its emitter."""

    cfg: DetectionConfig
    processor: ObjectProcessor
    emitter: ObjectEventEmitter


class DetectionService:
    """Tracked objects of each camera published as object events and snapshots through the link's outbox."""

    def __init__(
        self,
        cfg: DetectionConfig,
        link: Link,
        topics: DeviceTopics,
        envelopes: EnvelopeFactory,
        model_version: int | None = None,
        *,
        streams: Mapping[str, DetectionConfig] | None = None,
        single_source: bool = True,
        wall: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._lock = threading.Lock()
        self._link, self._topics, self._envelopes = link, ObjectTopics(topics), envelopes
        self._wall, self._perf = wall, perf
        self.quality = DetectionQualityWindow()
        self._model_version = model_version
        self._cfg = cfg
        self._stream_cfgs: dict[str, DetectionConfig] = dict(streams or {})
        self._store = self._open_store(cfg)
        self._lanes: dict[str, _Lane] = {}
        # The id prefix of each stream's objects (edge.stream_ids).
        self._ids = StreamIds()
        # One `source:`: its lane is kept ready, so its zones read 0 before the first frame. An agent serving
        # `streams:` gets each camera's lane with its first frame: no figures of a source it does not have.
        self._single_source = single_source
        self._ready()

    @property
    def cfg(self) -> DetectionConfig:
        """The agent-wide settings in force."""
        return self._cfg

    def stream_cfg(self, stream: str) -> DetectionConfig:
        """The settings one stream runs under: its own where `streams:` gives some, else the agent-wide ones."""
        return self._stream_cfgs.get(stream, self._cfg)

    @property
    def streams(self) -> list[str]:
        """Streams with a lane now (their objects are followed)."""
        with self._lock:
            return list(self._lanes)

    def frame_time_ms(self, captured_at: float) -> int:
        """Unix ms of a frame whose capture time is on the perf_counter clock (as sources stamp frames)."""
        return max(0, int((self._wall() - (self._perf() - captured_at)) * 1000))

    def on_frame(
        self, detections: Sequence[DetectionLike], frame: int, captured_at: float, image: np.ndarray | None = None,
        stream: str = DEFAULT_STREAM,
    ) -> list[ObjectEventPayload]:
        """Track one frame's detections on its stream and queue the events and snapshots it causes."""
        t_ms = self.frame_time_ms(captured_at)
        self.quality.add(detections)  # every box the model reported, before filters: the model's quality
        with self._lock:
            lane = self._lane(stream)
            return lane.emitter.publish(lane.processor.process(detections, frame, t_ms, image))

    def finish(self) -> list[ObjectEventPayload]:
        """End every followed object of every stream (the streams stopped)."""
        with self._lock:
            return self._restart(self._cfg, self._stream_cfgs, self._model_version)

    def drop_stream(self, stream: str) -> list[ObjectEventPayload]:
        """A removed stream: its followed objects end and its lane goes."""
        with self._lock:
            lane = self._lanes.pop(stream, None)
            self._stream_cfgs.pop(stream, None)
            if lane is None:
                return []
            return lane.emitter.publish(lane.processor.finish(int(self._wall() * 1000)))

    def set_streams(
        self, streams: Mapping[str, DetectionConfig], names: Collection[str] | None = None
    ) -> list[ObjectEventPayload]:
        """Streams' own settings; a stream whose settings change ends its objects and restarts its tracking.

        `names`: the streams that stay; any other is being removed and left to drop_stream(), which ends its
        objects after its last frame (ending them here would see them again in its last frames).
        """
        with self._lock:
            new = dict(streams)
            ended: list[ObjectEventPayload] = []
            for name in list(self._lanes):
                if names is not None and name != DEFAULT_STREAM and name not in names:
                    continue
                if new.get(name, self._cfg) != self._lanes[name].cfg:
                    ended += self._end_lane(name)
            self._stream_cfgs = new
            return ended

    def reconfigure(self, cfg: DetectionConfig) -> list[ObjectEventPayload]:
        """Take new settings: followed objects end under the old ones, tracking restarts under the new."""
        with self._lock:
            if cfg == self._cfg:
                return []
            ended = self._end_all()
            self._cfg = cfg
            self._store = self._open_store(cfg)
            self._ready()
            return ended

    def new_model(self, version: int | None) -> list[ObjectEventPayload]:
        """A different model serves: its boxes are not the old model's tracks, so objects end and tracking restarts."""
        with self._lock:
            return self._restart(self._cfg, self._stream_cfgs, version)

    def metrics(self) -> dict[str, float]:
        """Close the quality window (telemetry thread)."""
        return self.quality.metrics()

    def class_counts(self) -> dict[str, int]:
        """Label -> detections in the window metrics() closed last."""
        return self.quality.class_counts()

    def zone_counts(self) -> dict[str, int]:
        """{zone: objects, zone/label: objects} now per stream with a lane, every configured zone present, each key
        naming its stream (shared.streams.zone_key): two cameras' zones of one name are two figures (telemetry
        `zone_counts`)."""
        out: dict[str, int] = {}
        with self._lock:
            for name, lane in self._lanes.items():
                totals, per_label = lane.processor.zone_counts()
                out.update({zone_key(name, key): n for key, n in {**totals, **per_label}.items()})
        return out

    def _restart(
        self, cfg: DetectionConfig, streams: Mapping[str, DetectionConfig], version: int | None
    ) -> list[ObjectEventPayload]:
        """End every lane's objects, then start again under cfg and version (lock held)."""
        ended = self._end_all()
        self._cfg, self._stream_cfgs, self._model_version = cfg, dict(streams), version
        self._ready()
        return ended

    def _ready(self) -> None:
        """A single source's lane, kept ready before its frames (lock held, or in __init__)."""
        if self._single_source:
            self._lane(DEFAULT_STREAM)

    def _end_all(self) -> list[ObjectEventPayload]:
        ended: list[ObjectEventPayload] = []
        for name in list(self._lanes):
            ended += self._end_lane(name)
        return ended

    def _end_lane(self, name: str) -> list[ObjectEventPayload]:
        lane = self._lanes.pop(name)
        return lane.emitter.publish(lane.processor.finish(int(self._wall() * 1000)))

    def _lane(self, stream: str) -> _Lane:
        """The stream's lane, created at its first frame (lock held)."""
        lane = self._lanes.get(stream)
        if lane is not None:
            return lane
        # The default stream's ids stay '<ms>-<track>'; other streams' get 's<n>.' before them.
        prefix = self._ids.prefix(stream)
        cfg = self.stream_cfg(stream)
        snaps = cfg.snapshots
        budget = LaneBudget(SNAPSHOT_LANE, snaps.outbox_max_count, int(snaps.outbox_max_mb * 1024 * 1024))
        store = self._store if snaps.enabled else None
        emitter = ObjectEventEmitter(self._link, self._topics, self._envelopes, store, cfg.events.enabled, budget,
                                     stream)
        lane = _Lane(cfg, ObjectProcessor(cfg, self._model_version, prefix), emitter)
        self._lanes[stream] = lane
        return lane

    @staticmethod
    def _open_store(cfg: DetectionConfig) -> SnapshotStore | None:
        """One snapshot directory for every stream (it evicts its oldest files within one budget)."""
        snaps = cfg.snapshots
        if not snaps.enabled:
            return None
        try:
            return SnapshotStore(snaps.dir, int(snaps.disk_budget_mb * 1024 * 1024), snaps.max_files)
        except SnapshotError as exc:
            log.warning("snapshots are published but not kept on disk: %s", exc)
            return None
