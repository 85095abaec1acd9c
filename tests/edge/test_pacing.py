"""One pacing and one reconnect backoff for every reader: a camera faster than max_fps loses the early frames
(counted), a file waits for its slot, a stop cuts the wait short, and reconnect delays double and reset (the cap:
tests/edge/test_capture.py)."""

from __future__ import annotations

import threading

import numpy as np

from edge.pacing import Backoff, Pacer
from edge.sources.base import Frame


def frame(index: int) -> Frame:
    return Frame(index, np.zeros((2, 2, 3), np.uint8), 0.0, "cam")


def test_a_camera_faster_than_max_fps_loses_the_early_frames_and_counts_them() -> None:
    pacer = Pacer(1.0, threading.Event())
    assert pacer.admit(frame(0), live=True)
    assert not pacer.admit(frame(1), live=True)  # the next slot is a second away
    assert pacer.throttled == 1 and not pacer.waited
    assert not pacer.admit(frame(2), live=True)
    assert pacer.throttled == 2


def test_a_file_frame_waits_for_its_slot_and_a_stop_cuts_the_wait_short() -> None:
    stop = threading.Event()
    pacer = Pacer(0.001, stop)  # a slot every 1000 s
    assert pacer.admit(frame(0), live=False)
    stop.set()
    assert not pacer.admit(frame(1), live=False)  # would wait 1000 s: the stop ends it now, the frame goes
    assert Pacer(None, stop).admit(frame(2), live=True)  # no max_fps: every frame passes


def test_reconnect_delays_double_per_failure_and_a_frame_resets_them() -> None:
    stop = threading.Event()
    backoff = Backoff(0.001, 1.0)
    assert not backoff.wait(stop) and not backoff.wait(stop)
    assert backoff.delay_s == 0.004  # two failures: the next waits four times the first
    backoff.reset()
    assert backoff.delay_s == 0.001
    stop.set()
    assert backoff.wait(stop) and backoff.delay_s == 0.001  # stopped while waiting: nothing doubles
