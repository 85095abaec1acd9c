"""Batches take at most one frame per stream, rotate so no stream starves, and never hold a lone stream."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edge.sources.base import Frame
from edge.streams.ring import FrameRing
from edge.streams.scheduler import BatchScheduler


@dataclass
class FakeLane:
    name: str
    ring: FrameRing = field(default_factory=lambda: FrameRing(4, "fifo", stale_s=None))
    ended: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fill(lane: FakeLane, n: int, at: float = 100.0) -> None:
    for i in range(n):
        lane.ring.put(Frame(i, np.zeros((1, 1, 3), np.uint8), at, lane.name))


def test_a_batch_holds_one_frame_per_stream_even_when_a_stream_has_several_waiting() -> None:
    lanes = [FakeLane("a"), FakeLane("b")]
    fill(lanes[0], 3)
    fill(lanes[1], 1)
    scheduler = BatchScheduler(lanes, threading.Condition(), max_size=4, wait_s=0.0, clock=Clock())
    batch = scheduler.gather(0.0)
    assert sorted(t.lane.name for t in batch) == ["a", "b"]
    assert [t.frame.index for t in batch if t.lane.name == "a"] == [0]


def test_round_robin_serves_every_stream_when_the_batch_is_smaller_than_the_streams() -> None:
    lanes = [FakeLane(n) for n in "abcd"]
    for lane in lanes:
        fill(lane, 4)
    scheduler = BatchScheduler(lanes, threading.Condition(), max_size=1, wait_s=0.0, clock=Clock())
    served = [scheduler.gather(0.0)[0].lane.name for _ in range(8)]
    assert served == list("abcdabcd")
    assert Counter(served) == {n: 2 for n in "abcd"}


def test_a_lone_stream_is_not_held_waiting_for_a_full_batch() -> None:
    lanes = [FakeLane("solo"), FakeLane("gone", ended=True)]
    fill(lanes[0], 1)
    # A deadline of an hour: gather would hang if it waited for a stream that cannot deliver.
    scheduler = BatchScheduler(lanes, threading.Condition(), max_size=4, wait_s=3600.0, clock=Clock())
    assert [t.lane.name for t in scheduler.gather(0.0)] == ["solo"]


def test_a_frame_arriving_before_the_deadline_joins_the_batch() -> None:
    lanes = [FakeLane("a"), FakeLane("b")]
    doorbell = threading.Condition()
    fill(lanes[0], 1)

    def late() -> None:
        with doorbell:
            fill(lanes[1], 1)
            doorbell.notify_all()

    timer = threading.Timer(0.05, late)
    timer.start()
    scheduler = BatchScheduler(lanes, doorbell, max_size=2, wait_s=30.0)
    batch = scheduler.gather(1.0)
    timer.join()
    assert sorted(t.lane.name for t in batch) == ["a", "b"]


def test_nothing_ready_gives_an_empty_batch_and_finished_once_every_stream_ended() -> None:
    lanes = [FakeLane("a"), FakeLane("b")]
    scheduler = BatchScheduler(lanes, threading.Condition(), max_size=2, wait_s=0.0)
    assert scheduler.gather(0.01) == [] and not scheduler.finished
    for lane in lanes:
        lane.ended = True
    assert scheduler.finished
