"""The stall watchdog: a read blocked past stall_s is kicked into a reconnect, but a slow paced source is not; a frame
the fps cap discards counts once in the stream's skipped figure."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.config import StreamConfig, SyntheticSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.streams.capture import StreamCapture
from edge.streams.figures import StreamFigures
from edge.streams.ring import FrameRing
from tests.edge.gated_source import GatedSource


def capture(fps: float | None, stall_s: float) -> StreamCapture:
    cfg = StreamConfig(name="cam", source=SyntheticSource(fps=fps), stall_s=stall_s)
    return StreamCapture(cfg, Synthetic(fps=fps), FrameRing(2), threading.Condition(), StreamFigures())


def test_a_read_blocked_past_stall_s_is_kicked_once_and_counted() -> None:
    cam = capture(fps=30.0, stall_s=1.0)
    cam._reading_since = 100.0
    assert not cam.check_stall(100.5)
    assert cam.check_stall(101.5)
    assert not cam.check_stall(102.5), "one kick per stall"
    assert cam.figures.source_errors == 1


def test_a_source_paced_slower_than_stall_s_is_not_taken_for_stalled() -> None:
    cam = capture(fps=0.2, stall_s=1.0)  # a frame every 5 s: its read waits that long by design
    cam._reading_since = 100.0
    assert not cam.check_stall(106.0)
    assert cam.check_stall(111.0)


def test_a_frame_the_fps_cap_discards_adds_exactly_one_to_skipped() -> None:
    images = [np.zeros((8, 8, 3), np.uint8)] * 20
    source = GatedSource(images)
    cfg = StreamConfig(name="cam", source=SyntheticSource(), max_fps=0.01, stale_ms=None)
    ring = FrameRing(len(images), "latest", stale_s=None)  # room for every frame: the ring itself skips none
    cam = StreamCapture(cfg, source, ring, threading.Condition(), StreamFigures())
    cam.start()
    source.release(len(images))  # 20 live frames back to back against a slot every 100 s
    deadline = time.monotonic() + 20.0
    while not cam.ended and time.monotonic() < deadline:
        time.sleep(0.01)
    cam.stop()
    discarded_by_cap = len(images) - len(ring)  # what the source delivered minus what the ring accepted
    assert len(ring) == 1 and ring.skipped == 0
    assert cam.figures.values(ring.skipped, ring.stale)["skipped"] == discarded_by_cap == 19
