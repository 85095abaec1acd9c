"""Outbox lanes: large messages (snapshots) queue within their own count and byte budget, oldest dropped and counted,
while events and telemetry keep their place; queue files from before lanes still open and deliver."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.errors import OutboxError
from edge.link.lanes import SNAPSHOT_LANE, LaneBudget
from edge.link.outbox import Outbox

SNAP_TOPIC = "edgeferry/lab/cam-1/objects/snapshots/"


def test_a_lane_over_its_count_drops_its_oldest_and_keeps_other_messages(tmp_path: Path) -> None:
    budget = LaneBudget(SNAPSHOT_LANE, max_messages=3, max_bytes=10**6)
    with Outbox(tmp_path / "q.sqlite", max_messages=100) as box:
        for i in range(6):
            box.put("events", f"e{i}".encode())
            box.put(SNAP_TOPIC + str(i), f"jpeg{i}".encode() * 10, budget=budget)
        queued = [m.payload for m in box.peek(100)]
        assert queued == [b"e0", b"e1", b"e2", b"e3", b"jpeg3" * 10, b"e4", b"jpeg4" * 10, b"e5", b"jpeg5" * 10]
        assert box.depth() == 9
        assert box.lane_dropped(SNAPSHOT_LANE) == 3
        assert box.lane_usage(SNAPSHOT_LANE) == (3, 3 * 50)
        assert box.dropped == 0  # the queue itself never overflowed


def test_a_lane_over_its_bytes_drops_its_oldest(tmp_path: Path) -> None:
    budget = LaneBudget(SNAPSHOT_LANE, max_messages=100, max_bytes=2500)
    with Outbox(tmp_path / "q.sqlite") as box:
        for i in range(5):
            box.put(SNAP_TOPIC + str(i), bytes([i]) * 1000, budget=budget)
        assert [m.payload[0] for m in box.peek(100)] == [3, 4]
        assert box.lane_usage(SNAPSHOT_LANE) == (2, 2000)
        assert box.lane_dropped(SNAPSHOT_LANE) == 3


def test_a_message_larger_than_its_whole_lane_is_dropped_itself(tmp_path: Path) -> None:
    budget = LaneBudget(SNAPSHOT_LANE, max_messages=5, max_bytes=100)
    with Outbox(tmp_path / "q.sqlite") as box:
        box.put(SNAP_TOPIC + "a", b"x" * 50, budget=budget)
        box.put(SNAP_TOPIC + "b", b"y" * 500, budget=budget)
        assert [m.payload for m in box.peek(10)] == [b"x" * 50]
        assert box.lane_dropped(SNAPSHOT_LANE) == 1 and box.depth() == 1


def test_lane_drops_are_counted_across_reopening_and_the_budget_in_force_is_the_latest(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    with Outbox(path) as box:
        for i in range(4):
            box.put(SNAP_TOPIC + str(i), b"j", budget=LaneBudget(SNAPSHOT_LANE, 2, 1000))
    with Outbox(path) as box:
        assert box.lane_dropped(SNAPSHOT_LANE) == 2 and box.depth() == 2
        box.put(SNAP_TOPIC + "4", b"j", budget=LaneBudget(SNAPSHOT_LANE, 1, 1000))  # a smaller budget, set live
        assert box.lane_usage(SNAPSHOT_LANE) == (1, 1) and box.lane_dropped(SNAPSHOT_LANE) == 4
        assert box.depth() == 1


def test_a_queue_file_from_before_lanes_opens_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
                               qos INTEGER NOT NULL, retain INTEGER NOT NULL, created_ms INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO meta VALUES ('dropped', 7);
        INSERT INTO messages (topic, payload, qos, retain, created_ms) VALUES ('t', x'6f6c64', 1, 0, 1);
    """)
    db.close()
    with Outbox(path) as box:
        assert [m.payload for m in box.peek(10)] == [b"old"] and box.dropped == 7
        box.put(SNAP_TOPIC + "a", b"new", budget=LaneBudget(SNAPSHOT_LANE, 1, 100))
        assert [m.payload for m in box.peek(10)] == [b"old", b"new"]
        assert box.lane_usage(SNAPSHOT_LANE) == (1, 3)


@pytest.mark.parametrize(("lane", "count", "size"), [("", 1, 1), ("a b", 1, 1), ("snapshots", 0, 1),
                                                      ("snapshots", 1, 0)])
def test_a_nonsense_budget_is_refused_in_one_line(lane: str, count: int, size: int) -> None:
    with pytest.raises(OutboxError, match="lane"):
        LaneBudget(lane, count, size)
