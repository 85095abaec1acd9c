"""The `detection:` section of the agent config: object filters, masks, zones, tracking, object events, snapshots.

Everything here is a behaviour setting a signed set-config may change live, except `snapshots.dir` (where files
are written) which belongs to the local config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.names import check_ident
from shared.object_events import MAX_SNAPSHOT_BYTES

# Frame coordinates are pixels: 65536 covers any camera; a bound keeps areas and sums finite.
MAX_COORD = 65_536.0
Coord = Annotated[float, Field(ge=-MAX_COORD, le=MAX_COORD)]
Polygon = Annotated[list[tuple[Coord, Coord]], Field(min_length=3, max_length=256)]
MAX_AREA = MAX_COORD * MAX_COORD


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _labels(v: list[str]) -> list[str]:
    for label in v:
        if not label or len(label) > 128:
            raise ValueError(f"label {label!r} must be 1-128 characters")
    return v


class ObjectFilter(_Section):
    """Which detections of one label count at all (Frigate's objects.filters.<label>)."""

    min_score: float = Field(
        default=0.5, ge=0, le=1,
        description="An object is reported once its best score reaches this; weaker detections still keep a "
        "reported object's track alive (tracker.low_score is the floor).",
    )
    min_area: float = Field(default=0.0, ge=0, le=MAX_AREA, description="Smallest box area, square pixels.")
    max_area: float = Field(default=MAX_AREA, ge=0, le=MAX_AREA, description="Largest box area, square pixels.")
    mask: list[Polygon] = Field(
        default_factory=list, max_length=64,
        description="Polygons (frame pixels) where this label is ignored (tested on the box's bottom-centre).",
    )

    @model_validator(mode="after")
    def _area_order(self) -> ObjectFilter:
        if self.min_area > self.max_area:
            raise ValueError(f"min_area {self.min_area} is above max_area {self.max_area}")
        return self


class ZoneConfig(_Section):
    """A named region of the frame; an object is in it while its box's bottom-centre is inside (or on the edge)."""

    coordinates: Polygon = Field(description="Polygon corners [[x, y], ...] in frame pixels, at least 3.")
    objects: list[str] = Field(
        default_factory=list, max_length=256, description="Labels this zone counts; empty: every tracked label."
    )
    min_score: float = Field(default=0.0, ge=0, le=1, description="Objects scoring below this are not in the zone.")
    min_area: float = Field(default=0.0, ge=0, le=MAX_AREA, description="Smallest box area counted, square pixels.")
    max_area: float = Field(
        default=MAX_AREA, ge=0, le=MAX_AREA, description="Largest box area counted, square pixels."
    )
    inertia: int = Field(
        default=3, ge=1, le=1000,
        description="Consecutive frames an object must be inside before it counts as entered (stops flapping).",
    )
    loitering_time_s: float = Field(
        default=0.0, ge=0, le=86_400,
        description="An object inside longer than this (seconds of frame time) is loitering; 0: off.",
    )

    _objects = field_validator("objects")(lambda cls, v: _labels(v))

    @model_validator(mode="after")
    def _area_order(self) -> ZoneConfig:
        if self.min_area > self.max_area:
            raise ValueError(f"min_area {self.min_area} is above max_area {self.max_area}")
        return self


class TrackerConfig(_Section):
    """ByteTrack-style association: confident detections first, then weak ones to keep existing tracks alive."""

    high_score: float = Field(
        default=0.5, ge=0, le=1, description="Detections at or above this are matched first and may start tracks."
    )
    low_score: float = Field(
        default=0.1, ge=0, le=1,
        description="Detections between this and high_score only extend tracks already followed (occlusion).",
    )
    new_track_score: float = Field(
        default=0.6, ge=0, le=1, description="Lowest score of an unmatched detection that starts a new track."
    )
    match_iou: float = Field(
        default=0.2, ge=0, le=1, description="Least IoU between a track's predicted box and a confident detection."
    )
    low_match_iou: float = Field(
        default=0.5, ge=0, le=1, description="Least IoU between a track's predicted box and a weak detection."
    )
    duplicate_iou: float = Field(
        default=0.8, ge=0, le=1,
        description="An unmatched detection overlapping a matched track this much is its duplicate, not a new object.",
    )
    min_hits: int = Field(
        default=2, ge=1, le=1000, description="Frames a new track must be matched in before it is reported."
    )
    max_detections: int = Field(
        default=300, ge=1, le=10_000,
        description="Most detections associated per frame, best scores first (bounds the work a frame can cost).",
    )
    lost_frames: int = Field(
        default=30, ge=0, le=100_000,
        description="Frames a track may go unseen (occluded, missed) and still resume with its id.",
    )

    @model_validator(mode="after")
    def _score_order(self) -> TrackerConfig:
        if self.low_score > self.high_score:
            raise ValueError(f"low_score {self.low_score} is above high_score {self.high_score}")
        return self


class StationaryConfig(_Section):
    """When a tracked object counts as stationary (a parked car, a person standing)."""

    iou: float = Field(
        default=0.7, ge=0, le=1,
        description="A box overlapping its reference this much has not moved (detector jitter stays above it).",
    )
    frames: int = Field(
        default=25, ge=1, le=1_000_000, description="Frames without moving before the object is stationary."
    )
    move_frames: int = Field(
        default=3, ge=1, le=1000,
        description="Consecutive moved frames before a stationary object moves again (one stray box does not).",
    )


class ObjectEventsConfig(_Section):
    """Which object changes become `new`/`update`/`end` events (never one per frame)."""

    enabled: bool = Field(default=True, description="Publish object events at all.")
    score_delta: float = Field(
        default=0.1, gt=0, le=1,
        description="An update is sent when an object's top score rises by at least this since the last event.",
    )
    stationary: StationaryConfig = Field(default_factory=StationaryConfig, description="Stationary detection.")


class SnapshotConfig(_Section):
    """JPEG crops of each object's best frame (highest score): published and kept on disk within a budget."""

    enabled: bool = Field(default=False, description="Take snapshots at all.")
    dir: Path = Field(
        default=Path(".edge-cache/snapshots"), description="Where snapshots are kept (local config only)."
    )
    margin: float = Field(
        default=0.15, ge=0, le=2, description="Context around the box, as a share of its width and height."
    )
    max_side: int = Field(default=320, ge=16, le=4096, description="Longest side of a snapshot, pixels.")
    max_bytes: int = Field(
        default=64 * 1024, ge=2048, le=MAX_SNAPSHOT_BYTES,
        description="Largest JPEG; quality, then size, is lowered until it fits (base64 in a message under the "
        "broker's 1 MiB packet limit).",
    )
    quality: int = Field(default=85, ge=10, le=100, description="JPEG quality tried first.")
    disk_budget_mb: float = Field(
        default=64.0, gt=0, le=1_000_000, description="Disk the kept snapshots may use; oldest evicted beyond, MiB."
    )
    max_files: int = Field(default=1000, ge=1, le=1_000_000, description="Snapshots kept; oldest evicted beyond.")
    outbox_max_count: int = Field(
        default=100, ge=1, le=100_000,
        description="Snapshots queued for the broker (durable outbox) while it is away; oldest dropped beyond, "
        "counted in outbox_snapshots_dropped.",
    )
    outbox_max_mb: float = Field(
        default=8.0, gt=0, le=100_000,
        description="Payload bytes the queued snapshots may take in the outbox, MiB; oldest dropped beyond.",
    )


class DetectionConfig(_Section):
    """How a detector's boxes become tracked objects, zone occupancy and object events."""

    objects: list[str] = Field(
        default_factory=list, max_length=1024, description="Labels to track; empty: every label the model has."
    )
    filters: dict[str, ObjectFilter] = Field(
        default_factory=dict, max_length=1024,
        description="Per-label score, area and mask filters; labels without one use `default_filter`.",
    )
    default_filter: ObjectFilter = Field(
        default_factory=ObjectFilter, description="Filter for labels not listed in `filters`."
    )
    masks: list[Polygon] = Field(
        default_factory=list, max_length=64,
        description="Polygons (frame pixels) where every detection is ignored (tested on the bottom-centre).",
    )
    zones: dict[str, ZoneConfig] = Field(
        default_factory=dict, max_length=64, description="Named zones, e.g. {driveway: {coordinates: [...]}}."
    )
    tracker: TrackerConfig = Field(default_factory=TrackerConfig, description="Multi-object tracking.")
    events: ObjectEventsConfig = Field(default_factory=ObjectEventsConfig, description="Object events.")
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig, description="Best-frame snapshots.")

    _objects = field_validator("objects")(lambda cls, v: _labels(v))
    _filter_labels = field_validator("filters")(lambda cls, v: {_labels([k])[0]: f for k, f in v.items()})
    _zone_names = field_validator("zones")(lambda cls, v: {check_ident(k, "zone name"): z for k, z in v.items()})

    def filter_for(self, label: str) -> ObjectFilter:
        """The filter that applies to a label."""
        return self.filters.get(label, self.default_filter)
