"""Snapshots through the durable outbox over a real Mosquitto: taken while the broker is down, they wait in their
own budgeted lane (the oldest beyond it dropped and counted) and arrive when the link reconnects; events lose
nothing meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import MqttConfig
from edge.detection.config import DetectionConfig, SnapshotConfig, TrackerConfig
from edge.detection.service import DetectionService
from edge.link.lanes import SNAPSHOT_LANE
from edge.link.mqtt import MqttLink
from edge.telemetry import EnvelopeFactory
from shared.object_events import ObjectTopics, SnapshotPayload
from shared.topics import DeviceTopics
from tests.edge.detection.scenes import Walker
from tests.fixtures.broker import Broker, MqttProbe

BUDGET = 3
# Six people side by side, each a snapshot of its own: twice the lane's budget.
PEOPLE = [Walker(f"p{i}", "person", (20 + 100 * i, 100), (2, 0)) for i in range(6)]


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)


def draw(f: int) -> np.ndarray:
    image = np.full((480, 640, 3), 40, np.uint8)
    for w in PEOPLE:
        x1, y1, x2, y2 = (int(v) for v in w.box(f))
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 255), -1)
    return image


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Broker]) -> Broker:
    """Persistence keeps the subscriber's session through the restart, so nothing it subscribed to is missed."""
    return mosquitto_factory(persistence=True)


@pytest.fixture
def link(broker: Broker, tmp_path: Path) -> Iterator[MqttLink]:
    cfg = MqttConfig(host=broker.host, port=broker.port, outbox_path=tmp_path / "outbox.sqlite", keepalive_s=5,
                     reconnect_min_s=1, reconnect_max_s=1, flush_timeout_s=3)
    made = MqttLink(cfg, DeviceTopics("lab", "cam-1"))
    made.start()
    wait_until(lambda: made.connected, 10, "agent link connected")
    yield made
    made.stop()


def test_snapshots_taken_offline_wait_within_their_budget_and_arrive_on_reconnect(
    broker: Broker, mqtt_probe: Callable[..., MqttProbe], link: MqttLink, tmp_path: Path
) -> None:
    device = DeviceTopics("lab", "cam-1")
    topics = ObjectTopics(device)
    probe = mqtt_probe(broker, topics.events, topics.snapshots_filter, client_id="dashboard", persistent=True)
    cfg = DetectionConfig(
        tracker=TrackerConfig(min_hits=1),
        snapshots=SnapshotConfig(enabled=True, dir=tmp_path / "snaps", max_bytes=16_384, outbox_max_count=BUDGET),
    )
    service = DetectionService(cfg, link, device, EnvelopeFactory("cam-1"), model_version=1)

    broker.stop()
    wait_until(lambda: not link.connected, 10, "the link sees the outage")
    events = []
    for f in range(3):
        events += service.on_frame([w.det(f) for w in PEOPLE], f, time.perf_counter(), draw(f))
    events += service.finish()
    ids = {e.after.id for e in events}
    assert len(ids) == len(PEOPLE)

    queued, used = link.outbox.lane_usage(SNAPSHOT_LANE)
    dropped = link.outbox.lane_dropped(SNAPSHOT_LANE)
    assert queued == BUDGET and dropped >= len(PEOPLE) - BUDGET
    waiting = [m for m in link.outbox.peek(1000) if "/snapshots/" in m.topic]
    assert len(waiting) == BUDGET and sum(len(m.payload) for m in waiting) == used
    assert link.metrics()["outbox_snapshots_dropped"] == dropped
    # Every object has its snapshot on disk, whatever the outbox had to drop.
    assert sorted(p.stem for p in (tmp_path / "snaps").iterdir()) == sorted(ids)

    broker.start()
    probe.wait_subscribed(timeout=15)
    probe.wait_count(topics.events, len(events), timeout=30)
    wait_until(lambda: link.outbox.depth() == 0, 30, "outbox drained after the reconnect")
    arrived = [m for m in probe.messages if "/snapshots/" in m.topic]
    # Exactly the newest BUDGET snapshots, in the order they were taken, each a whole replayed JPEG.
    assert [(m.topic, m.payload) for m in arrived] == [(m.topic, m.payload) for m in waiting]
    for m in arrived:
        snap = SnapshotPayload.model_validate_json(m.payload)
        assert snap.replayed and snap.object_id in ids
    # Events kept their room in the queue: every one arrived.
    got = [(m.json()["type"], m.json()["after"]["id"]) for m in probe.on(topics.events)]
    assert set(got) == {(e.type, e.after.id) for e in events} and len(got) >= len(events)
