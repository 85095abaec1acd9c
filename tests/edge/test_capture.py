"""Capture policies, reconnects with backoff, and refusal of an unreadable source at start."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge.capture import Capture
from edge.config import SyntheticSource, VideoFileSource
from edge.errors import SourceError
from edge.pacing import Backoff
from edge.sources.base import Frame
from edge.sources.factory import open_source
from tests.edge.media import write_video


class FakeSource:
    """Yields `count` tiny frames (None for an endless source); failures are injected per read or open."""

    live = False

    def __init__(self, count: int | None, *, fail_reads: set[int] | None = None, fail_opens: int = 0) -> None:
        self.name = "fake"
        self.skipped = 0
        self.count = count
        self.fail_reads = set(fail_reads or ())
        self.fail_opens = fail_opens
        self.opens = 0
        self.closes = 0
        self.next = 0
        self.reads = 0
        self.interrupted = threading.Event()

    def open(self) -> None:
        self.opens += 1
        if self.opens > 1 and self.fail_opens:
            self.fail_opens -= 1
            raise SourceError("fake: device not there yet")

    def read(self) -> Frame | None:
        self.reads += 1
        if self.reads in self.fail_reads:
            raise SourceError("fake: device vanished")
        if self.interrupted.is_set() or (self.count is not None and self.next >= self.count):
            return None
        i = self.next
        self.next += 1
        return Frame(i, np.zeros((2, 2), np.uint8), time.perf_counter(), self.name)

    def interrupt(self) -> None:
        self.interrupted.set()

    def close(self) -> None:
        self.closes += 1


def settings(**kw: object) -> SyntheticSource:
    return SyntheticSource(**{"reconnect_backoff_s": 0.01, **kw})  # type: ignore[arg-type]


def wait_until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def drain(cap: Capture) -> list[int]:
    out = []
    while (frame := cap.get(timeout=5)) is not None:
        out.append(frame.index)
    return out


def test_latest_drops_stale_frames_and_counts_them() -> None:
    source = FakeSource(50)
    cap = Capture(source, settings(policy="latest", queue_size=2))
    wait_until(lambda: source.next == 50)  # the consumer has not taken anything yet
    assert drain(cap) == [48, 49]  # only the freshest frames survive
    assert cap.drops == 48
    assert cap.finished and cap.queue_depth() == 0


def test_all_keeps_every_frame_in_order_with_a_slow_consumer() -> None:
    source = FakeSource(40)
    cap = Capture(source, settings(policy="all", queue_size=2))
    got = []
    while (frame := cap.get(timeout=5)) is not None:
        got.append(frame.index)
        if len(got) < 5:
            time.sleep(0.02)  # the producer blocks on the full queue meanwhile
    assert got == list(range(40))
    assert cap.drops == 0 and cap.finished
    assert source.closes >= 1  # the capture thread closed the source at the end


def test_read_failures_reconnect_with_doubling_backoff_and_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    source = FakeSource(10, fail_reads={3}, fail_opens=2)
    with caplog.at_level(logging.WARNING, logger="edge.capture"):
        cap = Capture(source, settings(policy="all", queue_size=4))
        assert drain(cap) == list(range(10))  # nothing lost across the reconnect
    assert cap.source_errors == 3  # one failed read, two failed reopens
    assert source.opens == 4  # the first open, two refused, one that worked
    delays = [float(m) for m in re.findall(r"reconnecting in ([\d.]+) s", caplog.text)]
    assert delays == [0.01, 0.02, 0.04]


class NoWait(threading.Event):
    """A stop event whose waits end at once (never stopped): a backoff's delays without sleeping them."""

    def wait(self, timeout: float | None = None) -> bool:
        return False


def test_backoff_doubles_up_to_its_max() -> None:
    backoff, stop = Backoff(0.5, 30.0), NoWait()
    delays = [backoff.delay_s]
    for _ in range(8):
        assert not backoff.wait(stop)
        delays.append(backoff.delay_s)
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_camera_back_after_a_long_outage_is_retried_within_its_reconnect_max() -> None:
    # Doubling alone reaches 30 s, so a camera that returns after a minute could wait that long to be read again;
    # each reader's delays stop at the source's reconnect_max_s (10 s unless configured).
    assert SyntheticSource().reconnect_max_s == 10.0
    backoff = Backoff(0.001, 0.004)
    delays = []
    for _ in range(5):
        delays.append(backoff.delay_s)
        assert not backoff.wait(threading.Event())
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.004]
    backoff.reset()
    assert backoff.delay_s == 0.001


def test_a_reconnect_max_below_the_first_delay_is_refused_in_one_line() -> None:
    with pytest.raises(ValidationError, match=r"reconnect_max_s 1\.0 is below reconnect_backoff_s 5\.0"):
        SyntheticSource(reconnect_backoff_s=5, reconnect_max_s=1)


def test_a_source_bug_is_retried_not_fatal() -> None:
    class Buggy(FakeSource):
        def read(self) -> Frame | None:
            if self.reads == 1:
                self.reads += 1
                raise RuntimeError("driver bug")
            return super().read()

    source = Buggy(3)
    cap = Capture(source, settings(policy="all"))
    assert drain(cap) == [0, 1, 2]
    assert cap.source_errors == 1


def test_unreadable_file_at_start_raises_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        Capture(open_source(VideoFileSource(path=tmp_path / "missing.avi")), settings())
    junk = tmp_path / "junk.avi"
    junk.write_text("not a video")
    with pytest.raises(SourceError, match=r"junk\.avi"):
        Capture(open_source(VideoFileSource(path=junk)), settings())


def test_video_file_through_capture_policy_all(tmp_path: Path) -> None:
    cfg = VideoFileSource(path=write_video(tmp_path / "v.avi", 15), policy="all", queue_size=3)
    cap = Capture(open_source(cfg), cfg)
    assert drain(cap) == list(range(15))


def test_stop_ends_an_endless_source_and_get_returns_none() -> None:
    source = FakeSource(None)
    cap = Capture(source, settings(policy="latest", queue_size=1))
    assert cap.get(timeout=5) is not None
    cap.stop()
    assert source.interrupted.is_set()
    while cap.get(timeout=0) is not None:
        pass
    assert cap.finished and cap.get(timeout=0.01) is None


def test_live_frames_beyond_max_fps_are_discarded_not_queued() -> None:
    class Live(FakeSource):
        live = True

    source = Live(200)
    cap = Capture(source, settings(policy="all", queue_size=1024, max_fps=1.0))
    wait_until(lambda: cap.finished or source.next == 200)
    got = drain(cap)
    # 200 frames arrive back to back; at 1 frame/s only the first is released and the rest are dropped by the cap.
    assert got[0] == 0 and len(got) + cap.throttled == 200 and cap.throttled > 0
    assert cap.drops == 0
