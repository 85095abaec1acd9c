"""Wire contract of tracked objects: Frigate-shaped new/update/end object events, snapshots, per-zone counts.

Topics (beside the device's classification `events`, whose readers expect EventPayload):
  edgeferry/<fleet>/<device>/objects/events               ObjectEventPayload per lifecycle change of an object
  edgeferry/<fleet>/<device>/objects/snapshots/<object id> SnapshotPayload: the object's best frame, cropped JPEG
Like every device-sent payload, each field is bounded: finite numbers, short clean strings, capped lists.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.names import check_ident
from shared.payload_limits import Ident, Label, Token, UInt64, clean_text
from shared.payloads import Envelope
from shared.streams import DEFAULT_STREAM
from shared.topics import DeviceTopics

MAX_ZONES = 64
MAX_COORD = 65_536.0
MAX_CLASS_ID = 1_000_000
# As base64 in JSON (x4/3 plus envelope) this stays under deploy/mosquitto's max_packet_size of 1 MiB.
MAX_SNAPSHOT_BYTES = 512 * 1024
MAX_ZONE_COUNTS = 4096
ObjectEventType = Literal["new", "update", "end"]

Coord = Annotated[float, Field(ge=-MAX_COORD, le=MAX_COORD)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]
BoxField = tuple[Coord, Coord, Coord, Coord]
ZoneList = Annotated[list[Ident], Field(max_length=MAX_ZONES)]


def _jpeg_base64(v: str) -> str:
    try:
        raw = base64.b64decode(v.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("jpeg is not base64") from exc
    if not raw.startswith(b"\xff\xd8"):
        raise ValueError("jpeg does not hold a JPEG image")
    return v


def _zone_key(v: str) -> str:
    zone, sep, label = v.partition("/")
    check_ident(zone, "zone name")
    if sep:
        if not label:
            raise ValueError(f"zone count key {v!r} has an empty label")
        clean_text(label, 128)
    return v


ZoneCountKey = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_zone_key)]
# {zone: objects} and {zone/label: objects}: how many tracked objects stand in each zone now.
ZoneCounts = Annotated[dict[ZoneCountKey, UInt64], Field(max_length=MAX_ZONE_COUNTS)]


class ObjectState(BaseModel):
    """One tracked object as of one frame (Frigate's event `before`/`after`, times in Unix ms)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    id: Token = Field(description="Object id, unique per device: '<first seen ms>-<track id>'.")
    label: Label = Field(description="Label (the one with the most score evidence over the track).")
    class_id: int = Field(ge=0, le=MAX_CLASS_ID, description="Class index of the label in the model's output.")
    score: Score = Field(description="Score of the latest detection.")
    top_score: Score = Field(description="Best score seen for this object.")
    box: BoxField = Field(description="Latest box (x1, y1, x2, y2), frame pixels.")
    area: float = Field(ge=0, le=MAX_COORD * MAX_COORD, description="Box area, square pixels.")
    current_zones: ZoneList = Field(default_factory=list, description="Zones the object is in now.")
    entered_zones: ZoneList = Field(default_factory=list, description="Zones it has entered so far, in order.")
    first_seen_ms: UInt64 = Field(description="Frame time the object was first seen, Unix ms.")
    last_seen_ms: UInt64 = Field(description="Frame time it was last seen, Unix ms.")
    end_ms: UInt64 | None = Field(default=None, description="When it was given up on (end events), Unix ms.")
    frame_time_ms: UInt64 = Field(description="Time of the frame this state describes, Unix ms.")
    frame: UInt64 = Field(description="Index of that frame in the source.")
    stationary: bool = Field(default=False, description="Its box has not moved for the configured frames.")
    motionless_frames: UInt64 = Field(default=0, description="Frames since its box last moved.")
    loitering: bool = Field(default=False, description="In a zone with a loitering time for longer than it.")
    has_snapshot: bool = Field(default=False, description="A snapshot of its best frame exists.")
    model_version: UInt64 | None = Field(default=None, description="Model version that detected it.")


class ObjectEventPayload(Envelope):
    """A tracked object appeared (new), changed meaningfully (update) or was given up on (end)."""

    type: ObjectEventType = Field(description="Lifecycle step.")
    stream: Ident = Field(
        default=DEFAULT_STREAM, description="Stream (camera) the object was seen on; older agents' events: 'default'."
    )
    before: ObjectState | None = Field(
        default=None, description="State in the previous event (update, end); for new, the same as after (as Frigate)."
    )
    after: ObjectState = Field(description="State now.")


class SnapshotPayload(Envelope):
    """The best frame of one object (highest score), cropped around its box and size-capped, as base64 JPEG."""

    object_id: Token = Field(description="Object id, as in its events.")
    stream: Ident = Field(
        default=DEFAULT_STREAM, description="Stream (camera) of the snapshot's frame; older agents': 'default'."
    )
    label: Label = Field(description="Label at the time of the snapshot.")
    score: Score = Field(description="Score of the detection in the snapshot.")
    box: BoxField = Field(description="The object's box in the full frame, pixels.")
    crop: BoxField = Field(description="The cropped region of the full frame, pixels.")
    frame_time_ms: UInt64 = Field(description="Time of the snapshot's frame, Unix ms.")
    width: int = Field(ge=1, le=8192, description="JPEG width, pixels.")
    height: int = Field(ge=1, le=8192, description="JPEG height, pixels.")
    jpeg: Annotated[str, Field(max_length=math.ceil(MAX_SNAPSHOT_BYTES / 3) * 4), AfterValidator(_jpeg_base64)] = (
        Field(description="The JPEG file, base64.")
    )


class ObjectTopics:
    """Object topics of one device, under its DeviceTopics base."""

    def __init__(self, device: DeviceTopics) -> None:
        self.events = f"{device.base}/objects/events"
        self.snapshots_filter = f"{device.base}/objects/snapshots/+"
        self._snapshots = f"{device.base}/objects/snapshots"

    def snapshot(self, object_id: str) -> str:
        """Topic of one object's snapshot (not retained: object ids never repeat, so retained copies would pile up)."""
        if not object_id or any(c in object_id for c in "/+#\x00"):
            raise ValueError(f"object id {object_id!r} cannot be a topic level")
        return f"{self._snapshots}/{object_id}"
