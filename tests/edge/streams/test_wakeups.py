"""A 'fifo' capture waiting for room sleeps through other streams' frames and resumes once the scheduler takes."""

from __future__ import annotations

import threading
import time

import pytest

import edge.streams.capture as capture_module
from edge.config import StreamConfig, SyntheticSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.streams.capture import StreamCapture
from edge.streams.figures import StreamFigures
from edge.streams.ring import FrameRing
from edge.streams.scheduler import BatchScheduler


class CountingCondition(threading.Condition):
    """Counts the waits that started and the ones that ended."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.started = 0
        self.woken = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.started += 1
        try:
            return super().wait(timeout)
        finally:
            self.woken += 1


def test_a_full_fifo_capture_is_woken_by_the_scheduler_taking_not_by_other_streams_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(capture_module, "ROOM_POLL_S", 60.0)  # only a notification ends its wait for room
    lock = threading.Lock()
    doorbell, room = threading.Condition(lock), CountingCondition(lock)
    cfg = StreamConfig(name="cam", source=SyntheticSource(fps=None), policy="fifo", stale_ms=None, ring_size=1)
    ring = FrameRing(1, "fifo", stale_s=None)
    cam = StreamCapture(cfg, Synthetic(fps=None), ring, doorbell, StreamFigures(), room=room)
    scheduler = BatchScheduler([cam], doorbell, max_size=1, wait_s=0.0, room=room)
    cam.start()
    try:
        with doorbell:
            assert doorbell.wait_for(lambda: room.started > 0, 10.0), "the capture never waited for room"
            first = ring._frames[0].index
            for _ in range(20):  # frames of other streams ring the doorbell for the scheduler
                doorbell.notify_all()
        time.sleep(0.2)  # room for a wrongly woken capture to show itself
        with doorbell:
            assert room.woken == 0, "another stream's frame woke a capture waiting for room"
        taken = scheduler.gather(1.0)
        assert [t.frame.index for t in taken] == [first]
        with doorbell:
            assert doorbell.wait_for(lambda: len(ring) == 1 and ring._frames[0].index > first, 10.0), (
                "the capture did not resume after the scheduler made room")
    finally:
        cam.stop()
