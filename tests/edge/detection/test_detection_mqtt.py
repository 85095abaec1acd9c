"""End to end over a real Mosquitto: a synthetic scene with known ground truth goes through DetectionService and
the agent's MqttLink (durable outbox); a subscriber sees each object's lifecycle, its snapshots, and no object
under two ids."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import MqttConfig
from edge.detection.config import (
    DetectionConfig,
    ObjectEventsConfig,
    SnapshotConfig,
    StationaryConfig,
    TrackerConfig,
    ZoneConfig,
)
from edge.detection.service import DetectionService
from edge.link.mqtt import MqttLink
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload, ObjectTopics, SnapshotPayload
from shared.tasks.detection import Detection
from shared.topics import DeviceTopics
from tests.edge.detection.scenes import Walker
from tests.fixtures.broker import Broker, MqttProbe

T0_S = 1_700_000_000.0
FPS = 10
FRAMES = 80
YARD = [(200.0, 150.0), (400.0, 150.0), (400.0, 260.0), (200.0, 260.0)]
LOT = [(450.0, 300.0), (639.0, 300.0), (639.0, 479.0), (450.0, 479.0)]

WALKER = Walker("walker", "person", (0, 100), (8, 0))  # feet x 20 -> 652: crosses the yard, then leaves the frame
PARKED = Walker("parked", "car", (480, 360), (0, 0), size=(100, 60), class_id=2)  # in the lot the whole time
PASSER = Walker("passer", "person", (600, 20), (-6, 0), hidden=frozenset(range(30, 36)))  # above the yard, occluded


class SceneClock:
    """Frame f is captured at perf time f/FPS, and processed at once: its frame time is T0 + f/FPS."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf(self) -> float:
        return self.now

    def wall(self) -> float:
        return T0_S + self.now


def draw(f: int) -> np.ndarray:
    image = np.full((480, 640, 3), 40, np.uint8)
    for i, w in enumerate((WALKER, PARKED, PASSER)):
        if f in w.hidden:
            continue
        x1, y1, x2, y2 = (int(v) for v in w.box(f))
        cv2.rectangle(image, (x1, y1), (x2, y2), (60 * i + 80, 200, 255 - 60 * i), -1)
    return image


def detections(f: int, rng: np.random.Generator) -> list[Detection]:
    """What a decent detector reports: each visible object, its box jittered, its score wobbling."""
    out = []
    for w in (WALKER, PARKED, PASSER):
        x1, y1, x2, y2 = w.box(f)
        if f in w.hidden or x1 >= 640:
            continue
        jitter = rng.normal(0, 1.0, 4)
        box = (x1 + jitter[0], y1 + jitter[1], min(640.0, x2 + jitter[2]), y2 + jitter[3])
        out.append(Detection(w.label, w.class_id, float(np.clip(rng.normal(0.86, 0.02), 0.82, 0.9)), box))
    return out


@pytest.fixture
def link(mosquitto: Broker, tmp_path: Path) -> Iterator[MqttLink]:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, outbox_path=tmp_path / "outbox.sqlite", keepalive_s=5,
                     reconnect_min_s=1, reconnect_max_s=1, flush_timeout_s=3)
    made = MqttLink(cfg, DeviceTopics("lab", "cam-1"))
    made.start()
    deadline = time.monotonic() + 10
    while not made.connected:  # the scene's messages should go out live, not as replays
        assert time.monotonic() < deadline, "agent link did not connect"
        time.sleep(0.01)
    yield made
    made.stop()


def test_a_scene_reaches_the_broker_as_one_lifecycle_per_object(
    mosquitto: Broker, mqtt_probe: Callable[..., MqttProbe], link: MqttLink, tmp_path: Path
) -> None:
    device = DeviceTopics("lab", "cam-1")
    topics = ObjectTopics(device)
    probe = mqtt_probe(mosquitto, topics.events, topics.snapshots_filter)
    cfg = DetectionConfig(
        zones={"yard": ZoneConfig(coordinates=YARD, inertia=2),
               "lot": ZoneConfig(coordinates=LOT, inertia=2, objects=["car"], loitering_time_s=3)},
        tracker=TrackerConfig(lost_frames=10),
        events=ObjectEventsConfig(stationary=StationaryConfig(frames=10)),
        snapshots=SnapshotConfig(enabled=True, dir=tmp_path / "snaps", max_bytes=16_384),
    )
    clock = SceneClock()
    service = DetectionService(cfg, link, device, EnvelopeFactory("cam-1"), model_version=4,
                               wall=clock.wall, perf=clock.perf)
    rng = np.random.default_rng(15)
    counts_mid: dict[str, int] = {}
    for f in range(FRAMES):
        clock.now = f / FPS
        service.on_frame(detections(f, rng), f, clock.now, draw(f))
        if f == 35:  # walker's feet at x=300: in the yard
            counts_mid = service.zone_counts()
    counts_end = service.zone_counts()
    service.finish()

    expected = {
        "walker": [("new", []), ("update", ["yard"]), ("update", []), ("end", [])],
        "parked": [("new", []), ("update", ["lot"]), ("update", ["lot"]), ("update", ["lot"]), ("end", ["lot"])],
        "passer": [("new", []), ("end", [])],
    }
    got = probe.wait_count(topics.events, sum(map(len, expected.values())), timeout=20)
    events = [ObjectEventPayload.model_validate_json(m.payload) for m in got]
    by_id: dict[str, list[ObjectEventPayload]] = {}
    for e in events:
        by_id.setdefault(e.after.id, []).append(e)
    assert len(by_id) == 3, "one id per object, none twice"
    named = {}
    for evs in by_id.values():
        first = evs[0].after
        truth = {"person": WALKER if first.box[1] > 60 else PASSER, "car": PARKED}[first.label]
        named[truth.name] = evs
        assert all(e.after.model_version == 4 for e in evs)
    assert {k: [(e.type, e.after.current_zones) for e in v] for k, v in named.items()} == expected
    parked = named["parked"]
    assert (parked[2].after.stationary, parked[3].after.loitering) == (True, True)
    assert parked[3].after.frame_time_ms - parked[1].after.first_seen_ms >= 3000
    assert named["walker"][-1].after.entered_zones == ["yard"]
    assert counts_mid == {"yard": 1, "lot": 1, "yard/person": 1, "lot/car": 1}
    assert counts_end == {"yard": 0, "lot": 1, "lot/car": 1}

    for object_id in by_id:
        topic = topics.snapshot(object_id)
        probe.wait_for(lambda m, topic=topic: m.topic == topic, what=f"a snapshot on {topic}")
    snapshots = [m for m in probe.messages if "/snapshots/" in m.topic]
    assert {m.topic for m in snapshots} == {topics.snapshot(i) for i in by_id}
    for m in snapshots:
        snap = SnapshotPayload.model_validate_json(m.payload)
        jpeg = base64.b64decode(snap.jpeg)
        assert len(jpeg) <= 16_384
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (snap.height, snap.width)
    assert sorted(p.stem for p in (tmp_path / "snaps").iterdir()) == sorted(by_id)
