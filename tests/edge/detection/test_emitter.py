"""The processor and emitter together: a scene's objects become enveloped events and snapshots on their topics,
kept on disk, with one outbox batch per frame and no message per frame for a steady object."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np

from edge.detection.config import DetectionConfig, SnapshotConfig, TrackerConfig, ZoneConfig
from edge.detection.emitter import ObjectEventEmitter
from edge.detection.processor import ObjectProcessor
from edge.detection.snapshot_store import SnapshotStore
from edge.link.lanes import SNAPSHOT_LANE, LaneBudget
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectEventPayload, ObjectTopics, SnapshotPayload
from shared.topics import DeviceTopics
from tests.edge.detection.scenes import Walker
from tests.edge.fake_link import FakeLink

T0 = 1_700_000_000_000
ZONE = [(200.0, 0.0), (400.0, 0.0), (400.0, 480.0), (200.0, 480.0)]


def frame_with(walkers: list[Walker], f: int) -> np.ndarray:
    image = np.zeros((480, 640, 3), np.uint8)
    for w in walkers:
        x1, y1, x2, y2 = (int(v) for v in w.box(f))
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 255), -1)
    return image


def test_a_walk_through_a_zone_reaches_the_link_as_events_and_snapshots(tmp_path: Path) -> None:
    cfg = DetectionConfig(
        zones={"yard": ZoneConfig(coordinates=ZONE, inertia=2)},
        tracker=TrackerConfig(lost_frames=3),
        snapshots=SnapshotConfig(enabled=True, dir=tmp_path, max_bytes=8192),
    )
    link = FakeLink()
    topics = ObjectTopics(DeviceTopics("lab", "cam-1"))
    store = SnapshotStore(tmp_path, max_bytes=10**6, max_files=10)
    emitter = ObjectEventEmitter(link, topics, EnvelopeFactory("cam-1", "boot1"), store)
    processor = ObjectProcessor(cfg, model_version=2)
    w = Walker("a", "person", (0, 100), (10, 0))
    scores = [0.6] * 10 + [0.95] + [0.7] * 49
    for f in range(60):
        emitter.publish(processor.process([w.det(f, scores[f])], f, T0 + 100 * f, frame_with([w], f)))
    for f in range(60, 65):
        emitter.publish(processor.process([], f, T0 + 100 * f, frame_with([], f)))

    events = [ObjectEventPayload.model_validate_json(m.payload) for m in link.published if m.topic == topics.events]
    assert [(e.type, e.after.current_zones) for e in events] == [
        ("new", []), ("update", []), ("update", ["yard"]), ("update", []), ("end", [])
    ]  # the second: top score 0.6 -> 0.95
    assert [e.seq for e in events] == sorted(e.seq for e in events) and events[0].device_id == "cam-1"
    assert all(e.after.has_snapshot and e.after.model_version == 2 for e in events)

    snaps = [SnapshotPayload.model_validate_json(m.payload) for m in link.published if "/snapshots/" in m.topic]
    object_id = events[0].after.id
    assert [s.score for s in snaps] == [0.6, 0.95]  # the first sight, then the best frame; nothing more
    assert {m.topic for m in link.published if "/snapshots/" in m.topic} == {topics.snapshot(object_id)}
    jpeg = base64.b64decode(snaps[-1].jpeg)
    assert len(jpeg) <= 8192 and snaps[-1].frame_time_ms == T0 + 1000
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (snaps[-1].height, snaps[-1].width)
    assert (tmp_path / f"{object_id}.jpg").read_bytes() == jpeg
    assert processor.zone_counts() == ({"yard": 0}, {})


def test_zone_counts_follow_objects_standing_in_zones() -> None:
    cfg = DetectionConfig(zones={"yard": ZoneConfig(coordinates=ZONE, inertia=1)}, tracker=TrackerConfig(min_hits=1))
    processor = ObjectProcessor(cfg)
    inside = [Walker("a", "person", (250, 100), (0, 0)), Walker("b", "car", (300, 300), (0, 0), size=(60, 40))]
    outside = Walker("c", "person", (500, 100), (0, 0))
    for f in range(3):
        processor.process([w.det(f) for w in [*inside, outside]], f, T0 + f)
    assert processor.zone_counts() == ({"yard": 2}, {"yard/person": 1, "yard/car": 1})


def test_disabled_events_publish_nothing_and_a_full_disk_keeps_events_flowing(tmp_path: Path) -> None:
    link = FakeLink()
    topics = ObjectTopics(DeviceTopics("lab", "cam-1"))
    processor = ObjectProcessor(DetectionConfig(tracker=TrackerConfig(min_hits=1)))
    quiet = ObjectEventEmitter(link, topics, EnvelopeFactory("cam-1"), events_enabled=False)
    w = Walker("a", "person", (0, 0), (1, 0))
    assert quiet.publish(processor.process([w.det(0)], 0, T0)) == [] and link.published == []

    gone = tmp_path / "snaps"
    store = SnapshotStore(gone, max_bytes=10**6, max_files=10)
    gone.rmdir()
    gone.write_bytes(b"")  # the directory became a file: every write fails, as on a broken card
    cfg = DetectionConfig(tracker=TrackerConfig(min_hits=1), snapshots=SnapshotConfig(enabled=True))
    emitter = ObjectEventEmitter(link, topics, EnvelopeFactory("cam-1"), store)
    out = emitter.publish(ObjectProcessor(cfg).process([w.det(0)], 0, T0, frame_with([w], 0)))
    assert [e.type for e in out] == ["new"]
    assert [m.topic.rsplit("/", 2)[1] for m in link.published] == ["objects", "snapshots"]
    assert emitter.snapshot_errors == 1


def test_objects_that_are_never_reported_leave_no_crop_behind() -> None:
    cfg = DetectionConfig(tracker=TrackerConfig(lost_frames=1), snapshots=SnapshotConfig(enabled=True),
                          default_filter={"min_score": 0.95})  # type: ignore[arg-type]
    processor = ObjectProcessor(cfg)
    w = Walker("a", "person", (0, 0), (2, 0))
    for f in range(5):
        assert processor.process([w.det(f, 0.8)], f, T0 + f, frame_with([w], f)).events == []
    assert processor.snapshots.held() == {1}
    for f in range(5, 8):
        processor.process([], f, T0 + f, frame_with([], f))
    assert processor.snapshots.held() == set()
    processor.process([w.det(9, 0.8)], 9, T0 + 9, frame_with([w], 9))
    processor.process([w.det(10, 0.8)], 10, T0 + 10, frame_with([w], 10))
    processor.finish(T0 + 11)
    assert processor.snapshots.held() == set()


def test_offline_snapshots_queue_in_their_own_budgeted_lane_as_well_as_on_disk(tmp_path: Path) -> None:
    link = FakeLink(connected=False)
    topics = ObjectTopics(DeviceTopics("lab", "cam-1"))
    store = SnapshotStore(tmp_path, max_bytes=10**6, max_files=10)
    budget = LaneBudget(SNAPSHOT_LANE, max_messages=5, max_bytes=10**5)
    emitter = ObjectEventEmitter(link, topics, EnvelopeFactory("cam-1"), store, snapshot_budget=budget)
    cfg = DetectionConfig(tracker=TrackerConfig(min_hits=1), snapshots=SnapshotConfig(enabled=True))
    w = Walker("a", "person", (0, 0), (1, 0))
    out = emitter.publish(ObjectProcessor(cfg).process([w.det(0)], 0, T0, frame_with([w], 0)))
    assert [(m.topic, m.budget) for m in link.published] == [
        (topics.events, None), (topics.snapshot(out[0].after.id), budget)]
    assert SnapshotPayload.model_validate_json(link.published[1].payload).replayed
    assert [p.stem for p in tmp_path.iterdir()] == [out[0].after.id]
