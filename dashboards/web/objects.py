"""What the web app keeps of a detector's objects: its latest snapshot, its object events, its zone counts over time,
and which objects stand in which zone since when (the zone alert rules read it). No I/O.

Devices are untrusted: every payload passes its wire contract (shared.object_events: bounded numbers, clean labels,
a base64 JPEG of at most MAX_SNAPSHOT_BYTES), the envelope's device must be the topic's, and only devices the
registry knows are kept (`known`), at most `max_devices` of them. Memory is bounded per device (events, zone points,
objects in zones) and for snapshots in total: beyond `snapshot_budget_bytes` the least recently updated device's
snapshot is dropped. A malformed message raises Refused and changes nothing; one of an unknown device is
dropped and counted in `not_known`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from dashboards.errors import Refused
from dashboards.web.telemetry_report import parse_message
from shared.object_events import ObjectEventPayload, ObjectState, SnapshotPayload
from shared.payloads import TelemetryPayload

PER_DEVICE_EVENTS = 100
ZONE_POINTS = 720  # one per telemetry report: an hour at 5 s
MAX_DEVICES = 20_000
MAX_OBJECTS_IN_ZONES = 256  # per device; a device claiming more loses its oldest
SNAPSHOT_BUDGET_BYTES = 64 * 1024 * 1024


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ObjectEventRow(_View):
    """One object event as the device page lists it."""

    ts_ms: int = Field(description="Unix ms when the device sent it.")
    type: str = Field(description="new, update or end.")
    object_id: str = Field(description="Object id, unique per device.")
    label: str = Field(description="Label now.")
    score: float = Field(description="Score of the latest detection.")
    top_score: float = Field(description="Best score seen for this object.")
    box: tuple[float, float, float, float] = Field(description="Latest box (x1, y1, x2, y2), frame pixels.")
    current_zones: list[str] = Field(description="Zones the object is in now.")
    entered_zones: list[str] = Field(description="Zones it entered so far.")
    stationary: bool = Field(description="Its box has not moved for a while.")
    loitering: bool = Field(description="In a zone for longer than the zone's loitering time.")
    has_snapshot: bool = Field(description="A snapshot of its best frame exists.")
    first_seen_ms: int = Field(description="Frame time it was first seen, Unix ms.")
    last_seen_ms: int = Field(description="Frame time it was last seen, Unix ms.")


class SnapshotView(_View):
    """A device's latest object snapshot: the JPEG crop and where the object's box lies in it."""

    object_id: str = Field(description="Object id, as in its events.")
    label: str = Field(description="Label at the time of the snapshot.")
    score: float = Field(description="Score of the detection in the snapshot.")
    box: tuple[float, float, float, float] = Field(description="The object's box in the full frame, pixels.")
    crop: tuple[float, float, float, float] = Field(description="The region of the full frame the JPEG shows.")
    width: int = Field(description="JPEG width, pixels.")
    height: int = Field(description="JPEG height, pixels.")
    frame_time_ms: int = Field(description="Time of the snapshot's frame, Unix ms.")
    ts_ms: int = Field(description="Unix ms when the device sent it.")
    jpeg: str = Field(description="The JPEG file, base64.")


class ZoneSeries(_View):
    """Objects per zone (and per zone/label) over time, in uPlot's column shape."""

    ts_ms: list[int] = Field(description="Unix ms of each telemetry report.")
    series: dict[str, list[int | None]] = Field(
        description="'zone' and 'zone/label' -> objects at each report (None: not reported then).")


@dataclass(frozen=True)
class Occupant:
    """One object standing in one zone since `since_ms` (the frame time of the first event that had it there)."""

    device_id: str
    object_id: str
    label: str
    zone: str
    since_ms: int


def event_row(event: ObjectEventPayload) -> ObjectEventRow:
    """The page's row of one validated object event."""
    a = event.after
    return ObjectEventRow(ts_ms=event.ts, type=event.type, object_id=a.id, label=a.label, score=a.score,
                          top_score=a.top_score, box=a.box, current_zones=list(a.current_zones),
                          entered_zones=list(a.entered_zones), stationary=a.stationary, loitering=a.loitering,
                          has_snapshot=a.has_snapshot, first_seen_ms=a.first_seen_ms, last_seen_ms=a.last_seen_ms)


def objects_per_min(figures: Mapping[str, float]) -> float | None:
    """Detections per minute from the metric table's figures (objects per frame x frame rate); None for a device
    that serves no detector (it reports no det_objects_per_frame)."""
    per_frame, fps = figures.get("det_objects_per_frame"), figures.get("fps")
    if per_frame is None or fps is None:
        return None
    return round(per_frame * fps * 60.0, 1)


def zone_columns(points: list[tuple[int, dict[str, int]]]) -> ZoneSeries:
    """Points as columns: every key seen in any point, None where a point lacks it."""
    keys = sorted({k for _, counts in points for k in counts})
    return ZoneSeries(ts_ms=[t for t, _ in points],
                      series={k: [counts.get(k) for _, counts in points] for k in keys})


class ObjectBuffer:
    """Thread-safe: the MQTT thread adds, the web app's threads and the live hub read."""

    def __init__(
        self, known: Callable[[str], bool] | None = None, per_device: int = PER_DEVICE_EVENTS,
        zone_points: int = ZONE_POINTS, max_devices: int = MAX_DEVICES,
        snapshot_budget_bytes: int = SNAPSHOT_BUDGET_BYTES,
    ) -> None:
        self._known = known or (lambda _device: True)
        self._per_device = per_device
        self._zone_points = zone_points
        self._max_devices = max_devices
        self._budget = snapshot_budget_bytes
        self._lock = threading.Lock()
        self._events: dict[str, deque[ObjectEventRow]] = {}
        self._zones: dict[str, deque[tuple[int, dict[str, int]]]] = {}
        self._snapshots: OrderedDict[str, SnapshotView] = OrderedDict()
        self._snapshot_bytes = 0
        # device -> object id -> (label, {zone: since ms})
        self._inside: dict[str, OrderedDict[str, tuple[str, dict[str, int]]]] = {}
        self.not_known = 0  # messages dropped because their device is not in the registry

    def _admit(self, device_id: str, held: Mapping[str, object]) -> bool:
        """Whether a message of this device may be kept: one the registry knows, within max_devices. A device not
        known (yet: its first messages may come before the registry's row) is dropped and counted, not refused."""
        if device_id in held:
            return True
        if not self._known(device_id):
            self.not_known += 1
            return False
        return len(held) < self._max_devices

    def knows(self, device_id: str) -> bool:
        """Whether this device's messages are kept now (it is in the registry as of the last tick)."""
        return self._known(device_id)

    def add_event(self, device_id: str, payload: bytes) -> None:
        """One message of edgeferry/<fleet>/<device>/objects/events."""
        event = parse_message(ObjectEventPayload, device_id, payload, "object event")
        row = event_row(event)
        with self._lock:
            if not self._admit(device_id, self._events):
                return
            self._events.setdefault(device_id, deque(maxlen=self._per_device)).append(row)
            self._place(device_id, event.type, event.after)

    def _place(self, device_id: str, type_: str, after: ObjectState) -> None:
        """Where the object stands now: zones it left are dropped, zones it entered start their clock."""
        inside = self._inside.setdefault(device_id, OrderedDict())
        if type_ == "end" or not after.current_zones:
            inside.pop(after.id, None)
            return
        _, zones = inside.get(after.id, (after.label, {}))
        zones = {z: zones.get(z, after.frame_time_ms) for z in after.current_zones}
        inside[after.id] = (after.label, zones)
        inside.move_to_end(after.id)
        while len(inside) > MAX_OBJECTS_IN_ZONES:
            inside.popitem(last=False)

    def add_snapshot(self, device_id: str, object_id: str, payload: bytes) -> None:
        """One message of edgeferry/<fleet>/<device>/objects/snapshots/<object id>: the device's latest snapshot."""
        snap = parse_message(SnapshotPayload, device_id, payload, "snapshot")
        if snap.object_id != object_id:
            raise Refused("snapshot", f"sent on object {object_id[:64]!r}'s topic but names {snap.object_id!r}")
        view = SnapshotView(object_id=snap.object_id, label=snap.label, score=snap.score, box=snap.box,
                            crop=snap.crop, width=snap.width, height=snap.height, frame_time_ms=snap.frame_time_ms,
                            ts_ms=snap.ts, jpeg=snap.jpeg)
        with self._lock:
            if not self._admit(device_id, self._snapshots):
                return
            old = self._snapshots.pop(device_id, None)
            if old is not None:
                self._snapshot_bytes -= len(old.jpeg)
            self._snapshots[device_id] = view
            self._snapshot_bytes += len(view.jpeg)
            while self._snapshot_bytes > self._budget and len(self._snapshots) > 1:
                _, dropped = self._snapshots.popitem(last=False)
                self._snapshot_bytes -= len(dropped.jpeg)

    def add_report(self, device_id: str, doc: TelemetryPayload) -> None:
        """A telemetry report parsed (and its device checked) by telemetry_report.parse_telemetry: its zone_counts
        become one point of the device's zone chart (others: ignored)."""
        if doc.zone_counts is None or doc.replayed:
            return
        with self._lock:
            if not self._admit(device_id, self._zones):
                return
            points = self._zones.setdefault(device_id, deque(maxlen=self._zone_points))
            if points and doc.ts <= points[-1][0]:
                return  # late or repeated: the chart runs forward only
            points.append((doc.ts, dict(doc.zone_counts)))

    def snapshot(self, device_id: str) -> SnapshotView | None:
        """The device's latest snapshot, if any."""
        with self._lock:
            return self._snapshots.get(device_id)

    def events(self, device_id: str, limit: int) -> list[ObjectEventRow]:
        """The device's latest object events, newest first."""
        with self._lock:
            rows = list(self._events.get(device_id, ()))
        return rows[::-1][:limit]

    def zones(self, device_id: str, since_ms: int = 0) -> ZoneSeries:
        """The device's zone counts since since_ms, oldest first."""
        with self._lock:
            points = [p for p in self._zones.get(device_id, ()) if p[0] >= since_ms]
        return zone_columns(points)

    def occupants(self) -> list[Occupant]:
        """Every object in a zone now, with the time it entered (the zone alert rules' input)."""
        with self._lock:
            return [Occupant(device, oid, label, zone, since)
                    for device, inside in self._inside.items() for oid, (label, zones) in inside.items()
                    for zone, since in zones.items()]

    def forget(self, device_id: str) -> None:
        """Drop everything of a device (it was removed from the registry)."""
        with self._lock:
            self._events.pop(device_id, None)
            self._zones.pop(device_id, None)
            self._inside.pop(device_id, None)
            old = self._snapshots.pop(device_id, None)
            if old is not None:
                self._snapshot_bytes -= len(old.jpeg)
