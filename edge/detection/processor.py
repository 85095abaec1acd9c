"""One frame's detections to object events and snapshots: filters -> tracker -> best frames -> lifecycle.

Pure apart from JPEG encoding; the emitter publishes what it returns. One instance per video stream and model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge.detection.config import DetectionConfig
from edge.detection.counts import zone_counts
from edge.detection.filters import ObjectFilters
from edge.detection.lifecycle import ObjectEventDecision, ObjectLifecycle
from edge.detection.objects import DetectionLike
from edge.detection.snapshots import BestFrame, Jpeg, SnapshotKeeper
from edge.detection.tracker import ByteTracker, TrackStep


@dataclass(frozen=True)
class SnapshotOut:
    """A snapshot to publish and keep."""

    object_id: str
    best: BestFrame
    jpeg: Jpeg


@dataclass(frozen=True)
class FrameObjects:
    """What one frame produced."""

    events: list[ObjectEventDecision] = field(default_factory=list)
    snapshots: list[SnapshotOut] = field(default_factory=list)
    step: TrackStep | None = None


class ObjectProcessor:
    """Tracks objects across frames and decides their events and snapshots; not thread-safe (frame thread only)."""

    def __init__(self, cfg: DetectionConfig, model_version: int | None = None, id_prefix: str = "") -> None:
        self.cfg = cfg
        self.filters = ObjectFilters(cfg)
        self.tracker = ByteTracker(cfg.tracker)
        self.lifecycle = ObjectLifecycle(cfg, model_version, id_prefix)
        self.snapshots = SnapshotKeeper(cfg.snapshots)

    def process(
        self, detections: Sequence[DetectionLike], frame: int, frame_time_ms: int, image: np.ndarray | None = None
    ) -> FrameObjects:
        """Track one frame; image (HxW or HxWxC, uint8) is needed only for snapshots."""
        step = self.tracker.update(self.filters.apply(detections))
        if self.cfg.snapshots.enabled and image is not None:
            self.snapshots.offer(step.seen, image, frame_time_ms)
        events = self.lifecycle.step(step, frame, frame_time_ms, self.snapshots.held())
        snapshots = self._snapshots(events)
        for gone in step.removed:
            self.snapshots.forget(gone.track_id)  # objects never reported had crops too
        return FrameObjects(events, snapshots, step)

    def finish(self, frame_time_ms: int) -> FrameObjects:
        """End every object (the stream stopped or the model changed)."""
        self.tracker.finish()
        events = self.lifecycle.finish(frame_time_ms)
        snapshots = self._snapshots(events)
        self.snapshots = SnapshotKeeper(self.cfg.snapshots)
        return FrameObjects(events, snapshots)

    def zone_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """({zone: objects}, {zone/label: objects}) over the reported objects followed now."""
        return zone_counts(self.lifecycle.live(), self.cfg.zones)

    def _snapshots(self, events: list[ObjectEventDecision]) -> list[SnapshotOut]:
        out: list[SnapshotOut] = []
        for event in events:
            best = self.snapshots.due(event.track_id) if self.cfg.snapshots.enabled else None
            jpeg = self.snapshots.encode(best) if best is not None else None
            if best is not None and jpeg is not None:
                out.append(SnapshotOut(event.after.id, best, jpeg))
            if event.type == "end":
                self.snapshots.forget(event.track_id)
        return out
