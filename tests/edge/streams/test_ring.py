"""A stream's ring keeps the newest frames, counts the ones it overwrites, and drops (and counts) stale ones."""

from __future__ import annotations

import numpy as np
import pytest

from edge.sources.base import Frame
from edge.streams.ring import FrameRing


def frame(index: int, at: float) -> Frame:
    return Frame(index, np.zeros((2, 2, 3), np.uint8), at, "test")


def test_latest_keeps_the_newest_frames_and_counts_what_it_overwrote() -> None:
    ring = FrameRing(2, "latest", stale_s=None)
    for i in range(5):
        ring.put(frame(i, 0.0))
    assert ring.skipped == 3
    assert [ring.take(1.0).index, ring.take(1.0).index] == [3, 4]  # type: ignore[union-attr]
    assert ring.take(1.0) is None


def test_a_frame_older_than_the_staleness_cap_is_dropped_and_counted() -> None:
    ring = FrameRing(4, "latest", stale_s=0.5)
    ring.put(frame(0, 10.0))
    ring.put(frame(1, 10.4))
    ring.put(frame(2, 10.6))
    taken = ring.take(11.0)
    assert taken is not None and taken.index == 2
    assert ring.stale == 2 and ring.skipped == 0


def test_ready_drops_stale_frames_so_a_stale_ring_is_not_ready() -> None:
    ring = FrameRing(2, "fifo", stale_s=0.1)
    ring.put(frame(0, 0.0))
    assert ring.ready(0.05) and not ring.ready(0.2)
    assert ring.stale == 1 and len(ring) == 0


def test_fifo_reports_full_so_its_producer_waits() -> None:
    ring = FrameRing(1, "fifo", stale_s=None)
    assert not ring.full
    ring.put(frame(0, 0.0))
    assert ring.full


def test_a_ring_without_room_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        FrameRing(0)
