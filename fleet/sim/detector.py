"""A simulated detector: people and cars crossing a 320 x 240 frame with two zones, as the object events, snapshots,
zone counts and detection figures a detection agent publishes (shared.object_events, shared.metrics).

Pure: a seeded random source per device, no I/O; the device calls `tick` once per telemetry report and wraps what
it returns in its envelopes. Objects walk (people) or drive (cars) left to right; now and then a car parks in the
driveway for a while (stationary, then loitering: the zone alert rules' case). Each object gets `new` when it
appears, `update` when its zones or stationary state change, `end` when it leaves; its snapshot (a small JPEG,
when OpenCV is installed) goes out with its `new` event.
"""

from __future__ import annotations

import base64
import importlib.util
import random
from dataclasses import dataclass, field
from typing import Any

W, H = 320, 240
# Zones in frame pixels; an object is in one while its box's bottom-centre is inside (as the agent tests it).
ZONES: dict[str, tuple[float, float, float, float]] = {"driveway": (0, 150, 200, 240), "door": (230, 60, 320, 200)}
LABELS = ("person", "car")
SIZES = {"person": (18.0, 44.0), "car": (70.0, 36.0)}
SPEEDS = {"person": (12.0, 25.0), "car": (40.0, 80.0)}  # pixels per second
PARK_SHARE, PARK_S = 0.4, (25.0, 60.0)  # cars that stop in the driveway, and for how long
SPAWN_PER_S = 0.25
MAX_OBJECTS = 8


@dataclass
class _Object:
    oid: str
    label: str
    x: float
    y: float
    speed: float
    first_ms: int
    park_at: float | None = None
    parked_s: float = 0.0
    park_for: float = 0.0
    zones: tuple[str, ...] = ()
    entered: list[str] = field(default_factory=list)
    stationary: bool = False
    score: float = 0.8

    def box(self) -> tuple[float, float, float, float]:
        w, h = SIZES[self.label]
        return (self.x, self.y - h, self.x + w, self.y)


def zones_of(box: tuple[float, float, float, float]) -> tuple[str, ...]:
    """Zones holding the box's bottom-centre."""
    cx, by = (box[0] + box[2]) / 2, box[3]
    return tuple(z for z, (x1, y1, x2, y2) in ZONES.items() if x1 <= cx <= x2 and y1 <= by <= y2)


def _jpeg(label: str) -> str | None:
    """A small coloured JPEG standing in for the object's crop (None where OpenCV is not installed)."""
    if importlib.util.find_spec("cv2") is None:
        return None
    import cv2
    import numpy as np

    img = np.full((48, 48, 3), 90, np.uint8)
    cv2.rectangle(img, (8, 8), (40, 40), (200, 120, 60) if label == "person" else (60, 140, 230), -1)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


@dataclass
class DetectorSim:
    """Objects, their events and the figures of one simulated detector."""

    seed: str
    model_version: int = 1
    fps: float = 10.0
    spawn_per_s: float = SPAWN_PER_S
    _rng: random.Random = field(default_factory=random.Random)
    _objects: dict[str, _Object] = field(default_factory=dict)
    _next: int = 0
    _jpegs: dict[str, str | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"detector:{self.seed}")

    def tick(self, interval_s: float, now_ms: int) -> tuple[dict[str, float], dict[str, int],
                                                             list[tuple[str, dict[str, Any]]]]:
        """(figures, zone_counts, [(kind, body)]) for one telemetry window: kind "event" bodies are an
        ObjectEventPayload's fields without the envelope, "snapshot" bodies a SnapshotPayload's."""
        out: list[tuple[str, dict[str, Any]]] = []
        for obj in list(self._objects.values()):
            self._move(obj, interval_s)
            if obj.x > W:
                del self._objects[obj.oid]
                out.append(("event", self._event("end", obj, now_ms, end=True)))
                continue
            zones, stationary = zones_of(obj.box()), obj.parked_s > 5.0
            if zones != obj.zones or stationary != obj.stationary:
                before = self._state(obj, now_ms)
                obj.zones, obj.stationary = zones, stationary
                obj.entered += [z for z in zones if z not in obj.entered]
                out.append(("event", {"type": "update", "before": before, "after": self._state(obj, now_ms)}))
        if len(self._objects) < MAX_OBJECTS and self._rng.random() < 1 - (1 - self.spawn_per_s) ** interval_s:
            obj = self._spawn(now_ms)
            out.append(("event", self._event("new", obj, now_ms)))
            snap = self._snapshot(obj, now_ms)
            if snap is not None:
                out.append(("snapshot", snap))
        return self._figures(interval_s), self._counts(), out

    def _spawn(self, now_ms: int) -> _Object:
        label = self._rng.choice(LABELS)
        lo, hi = SPEEDS[label]
        y = self._rng.uniform(170, 235) if label == "car" else self._rng.uniform(90, 235)
        obj = _Object(f"{now_ms}-{self._next}", label, -SIZES[label][0] / 2, y, self._rng.uniform(lo, hi), now_ms,
                      score=round(self._rng.uniform(0.6, 0.95), 3))
        if label == "car" and self._rng.random() < PARK_SHARE:
            obj.park_at, obj.park_for = self._rng.uniform(40, 110), self._rng.uniform(*PARK_S)
        obj.zones = zones_of(obj.box())
        obj.entered = list(obj.zones)
        self._next += 1
        self._objects[obj.oid] = obj
        return obj

    def _move(self, obj: _Object, interval_s: float) -> None:
        if obj.park_at is not None and obj.x >= obj.park_at and obj.parked_s < obj.park_for:
            obj.parked_s += interval_s
            return
        obj.x += obj.speed * interval_s

    def _state(self, obj: _Object, now_ms: int, end: bool = False) -> dict[str, Any]:
        box = obj.box()
        return {"id": obj.oid, "label": obj.label, "class_id": LABELS.index(obj.label), "score": obj.score,
                "top_score": obj.score, "box": box, "area": (box[2] - box[0]) * (box[3] - box[1]),
                "current_zones": list(obj.zones), "entered_zones": list(obj.entered), "first_seen_ms": obj.first_ms,
                "last_seen_ms": now_ms, "end_ms": now_ms if end else None, "frame_time_ms": now_ms,
                "frame": max(0, int((now_ms - obj.first_ms) / 1000 * self.fps)), "stationary": obj.stationary,
                "motionless_frames": int(obj.parked_s * self.fps), "loitering": False, "has_snapshot": True,
                "model_version": self.model_version}

    def _event(self, type_: str, obj: _Object, now_ms: int, end: bool = False) -> dict[str, Any]:
        after = self._state(obj, now_ms, end)
        return {"type": type_, "before": after, "after": after}

    def _snapshot(self, obj: _Object, now_ms: int) -> dict[str, Any] | None:
        if obj.label not in self._jpegs:
            self._jpegs[obj.label] = _jpeg(obj.label)
        jpeg = self._jpegs[obj.label]
        if jpeg is None:
            return None
        x1, y1, x2, y2 = obj.box()
        mx, my = (x2 - x1) * 0.25, (y2 - y1) * 0.25  # the crop: the box grown by a margin, as the agent crops
        return {"object_id": obj.oid, "label": obj.label, "score": obj.score, "box": (x1, y1, x2, y2),
                "crop": (x1 - mx, y1 - my, x2 + mx, y2 + my), "frame_time_ms": now_ms, "width": 48, "height": 48,
                "jpeg": jpeg}

    def _figures(self, interval_s: float) -> dict[str, float]:
        frames = max(1, round(self.fps * interval_s))
        n = len(self._objects)
        out = {"det_frames_window": float(frames), "det_objects_per_frame": float(n)}
        if n:
            out["det_score_mean"] = round(sum(o.score for o in self._objects.values()) / n, 4)
        return out

    def _counts(self) -> dict[str, int]:
        counts = dict.fromkeys(ZONES, 0)
        for obj in self._objects.values():
            for z in obj.zones:
                counts[z] += 1
                key = f"{z}/{obj.label}"
                counts[key] = counts.get(key, 0) + 1
        return counts
