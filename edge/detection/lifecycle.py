"""Tracked objects to Frigate-shaped lifecycle events: `new` once an object is confidently seen, `update` only on a
meaningful change (zones, label, stationary, loitering, a top score risen by score_delta), `end` when given up on.

Pure: frame times come in with each step, nothing is published here (edge.detection.emitter does that).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from edge.detection.config import DetectionConfig
from edge.detection.filters import ObjectFilters
from edge.detection.geometry import area, iou
from edge.detection.objects import Box
from edge.detection.tracker import TrackedObject, TrackStep
from edge.detection.zones import ZoneTracker
from shared.object_events import ObjectEventType, ObjectState


@dataclass
class _Record:
    track_id: int
    object_id: str
    label: str
    class_id: int
    score: float
    top_score: float
    box: Box
    first_seen_ms: int
    last_seen_ms: int
    frame_time_ms: int
    frame: int
    current_zones: tuple[str, ...] = ()
    entered_zones: list[str] = field(default_factory=list)
    loitering: bool = False
    ref_box: Box | None = None
    motionless: int = 0
    moved: int = 0  # consecutive frames a stationary object was off its reference box
    stationary: bool = False
    has_snapshot: bool = False
    published: ObjectState | None = None


@dataclass(frozen=True)
class ObjectEventDecision:
    """An object event to send."""

    type: ObjectEventType
    track_id: int
    before: ObjectState | None
    after: ObjectState


@dataclass(frozen=True)
class LiveObject:
    """A reported object still followed (seen this frame or briefly lost), for zone counts."""

    object_id: str
    label: str
    current_zones: tuple[str, ...]


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, float(v)))


class ObjectLifecycle:
    """Keeps one record per tracked object and decides its events; one instance per stream, not thread-safe."""

    def __init__(self, cfg: DetectionConfig, model_version: int | None = None, id_prefix: str = "") -> None:
        self.cfg = cfg
        self.model_version = model_version
        # Streams of one agent track apart: a prefix per stream keeps their object ids from colliding.
        self.id_prefix = id_prefix
        self.filters = ObjectFilters(cfg)
        self.zones = ZoneTracker(cfg.zones)
        self._records: dict[int, _Record] = {}

    def step(
        self, step: TrackStep, frame: int, frame_time_ms: int, with_snapshot: Collection[int] = ()
    ) -> list[ObjectEventDecision]:
        """The events one tracker step triggers, in order: ends first (their ids are gone), then new and update.

        with_snapshot: track ids that have a snapshot by now (their states say has_snapshot).
        """
        out: list[ObjectEventDecision] = []
        for gone in step.removed:
            end = self._end(gone.track_id, frame_time_ms)
            if end is not None:
                out.append(end)
        for obj in step.seen:
            decision = self._observe(obj, frame, frame_time_ms, obj.track_id in with_snapshot)
            if decision is not None:
                out.append(decision)
        return out

    def finish(self, frame_time_ms: int) -> list[ObjectEventDecision]:
        """`end` for every reported object (the stream stopped)."""
        ends = [self._end(tid, frame_time_ms) for tid in list(self._records)]
        return [e for e in ends if e is not None]

    def live(self) -> list[LiveObject]:
        """Reported objects still followed, with the zones they stand in."""
        return [LiveObject(r.object_id, r.label, r.current_zones) for r in self._records.values() if r.published]

    def object_id(self, track_id: int) -> str | None:
        """The wire id of a tracked object, once it has a record."""
        rec = self._records.get(track_id)
        return rec.object_id if rec else None

    def _observe(self, obj: TrackedObject, frame: int, t_ms: int, has_snapshot: bool) -> ObjectEventDecision | None:
        rec = self._records.get(obj.track_id)
        if rec is None:
            rec = _Record(obj.track_id, f"{self.id_prefix}{t_ms}-{obj.track_id}", obj.label, obj.class_id, obj.score,
                          obj.score, obj.box, t_ms, t_ms, t_ms, frame)
            self._records[obj.track_id] = rec
        rec.label, rec.class_id, rec.score, rec.box = obj.label, obj.class_id, obj.score, obj.box
        rec.top_score = max(rec.top_score, obj.score)
        rec.last_seen_ms = rec.frame_time_ms = t_ms
        rec.frame = frame
        rec.has_snapshot = rec.has_snapshot or has_snapshot
        self._move(rec)
        status = self.zones.observe(obj.track_id, obj.label, obj.score, obj.box, t_ms / 1000.0)
        rec.current_zones = status.current
        rec.entered_zones += [z for z in status.current if z not in rec.entered_zones]
        rec.loitering = bool(status.loitering)

        before = rec.published
        if before is None:
            if not self.filters.reportable(rec.label, rec.top_score):
                return None
            rec.published = self._state(rec)
            return ObjectEventDecision("new", rec.track_id, rec.published, rec.published)  # as Frigate: before = after
        if not self._changed(before, rec):
            return None
        rec.published = self._state(rec)
        return ObjectEventDecision("update", rec.track_id, before, rec.published)

    def _move(self, rec: _Record) -> None:
        s = self.cfg.events.stationary
        if rec.ref_box is not None and iou(rec.box, rec.ref_box) >= s.iou:
            rec.motionless += 1
            rec.moved = 0
        elif rec.stationary and rec.moved + 1 < s.move_frames:
            rec.moved += 1  # off its spot, but not for long enough to call it moving
            return
        else:
            rec.ref_box, rec.motionless, rec.moved = rec.box, 0, 0
        rec.stationary = rec.motionless >= s.frames

    def _changed(self, before: ObjectState, rec: _Record) -> bool:
        return (
            before.label != rec.label
            or tuple(before.current_zones) != rec.current_zones
            or before.stationary != rec.stationary
            or before.loitering != rec.loitering
            or _clip01(rec.top_score) >= before.top_score + self.cfg.events.score_delta
        )

    def _end(self, track_id: int, t_ms: int) -> ObjectEventDecision | None:
        rec = self._records.pop(track_id, None)
        self.zones.forget(track_id)
        if rec is None or rec.published is None:
            return None
        before = rec.published
        return ObjectEventDecision("end", track_id, before, self._state(rec, end_ms=t_ms))

    def _state(self, rec: _Record, end_ms: int | None = None) -> ObjectState:
        return ObjectState(
            id=rec.object_id, label=rec.label, class_id=rec.class_id, score=_clip01(rec.score),
            top_score=_clip01(rec.top_score), box=rec.box, area=area(rec.box), current_zones=list(rec.current_zones),
            entered_zones=list(rec.entered_zones), first_seen_ms=rec.first_seen_ms, last_seen_ms=rec.last_seen_ms,
            end_ms=end_ms, frame_time_ms=rec.frame_time_ms, frame=rec.frame, stationary=rec.stationary,
            motionless_frames=rec.motionless, loitering=rec.loitering, has_snapshot=rec.has_snapshot,
            model_version=self.model_version,
        )
