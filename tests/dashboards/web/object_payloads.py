"""A detector's messages as an agent publishes them (shared.object_events): object events, snapshots, telemetry."""

from __future__ import annotations

import base64
import json
from typing import Any

import cv2
import numpy as np

from shared.object_events import ObjectEventPayload, ObjectState, SnapshotPayload

NOW = 1_700_000_000_000
GRAY = 128


def gray_jpeg(width: int, height: int) -> bytes:
    """A plain mid-gray JPEG: anything drawn over it in colour stands out."""
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), GRAY, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


class Detector:
    """One device's envelopes (seq counts up) and payload builders."""

    def __init__(self, device_id: str, boot: str = "boot-1") -> None:
        self.device_id = device_id
        self.boot = boot
        self.seq = 0

    def env(self, ts: int) -> dict[str, Any]:
        self.seq += 1
        return {"device_id": self.device_id, "boot_id": self.boot, "seq": self.seq, "ts": ts}

    def state(self, oid: str, label: str, t_ms: int, zones: list[str], first_ms: int | None = None,
              box: tuple[float, float, float, float] = (10.0, 10.0, 30.0, 40.0), **over: Any) -> ObjectState:
        return ObjectState(id=oid, label=label, class_id=0, score=0.9, top_score=0.9, box=box,
                           area=(box[2] - box[0]) * (box[3] - box[1]), current_zones=zones, entered_zones=zones,
                           first_seen_ms=first_ms or t_ms, last_seen_ms=t_ms, frame_time_ms=t_ms, frame=1, **over)

    def event(self, type_: str, oid: str, label: str, t_ms: int, zones: list[str], **over: Any) -> bytes:
        after = self.state(oid, label, t_ms, zones, **over)
        return ObjectEventPayload(**self.env(t_ms), type=type_, before=after, after=after).model_dump_json().encode()

    def snapshot(self, oid: str, label: str, box: tuple[float, float, float, float],
                 crop: tuple[float, float, float, float], size: tuple[int, int], t_ms: int = NOW) -> bytes:
        jpeg = base64.b64encode(gray_jpeg(*size)).decode("ascii")
        return SnapshotPayload(**self.env(t_ms), object_id=oid, label=label, score=0.87, box=box, crop=crop,
                               frame_time_ms=t_ms, width=size[0], height=size[1], jpeg=jpeg).model_dump_json().encode()

    def telemetry(self, t_ms: int, zone_counts: dict[str, int] | None, **figures: float) -> bytes:
        body: dict[str, Any] = {**self.env(t_ms), **figures}
        if zone_counts is not None:
            body["zone_counts"] = zone_counts
        return json.dumps(body).encode()
