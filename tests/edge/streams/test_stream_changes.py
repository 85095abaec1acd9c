"""Streams change while the loop runs: a removed stream stops and is reported once none of its frames can follow,
an added one starts, and a stream that stays keeps every frame, in order, through the change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge.errors import AgentError
from edge.frame_stats import FrameStats
from edge.pipeline import FrameResult
from edge.sources.base import FrameSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.streams.server import MultiStreamLoop
from edge.supervise import Health
from tests.edge.streams.test_server import slot_for, stream


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def camera() -> FrameSource:
    return Synthetic("digits", height=28, width=28, fps=100.0)  # type: ignore[arg-type]


def wait_until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_stream_removed_and_one_added_while_the_other_keeps_every_frame(tmp_path: Path,
                                                                          stop: threading.Event) -> None:
    results: list[FrameResult] = []
    removed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def on_result(r: FrameResult) -> None:
        with lock:
            results.append(r)

    def frames_of(name: str) -> list[int]:
        with lock:
            return [r.index for r in results if r.stream == name]

    def on_removed(name: str) -> None:
        removed.append((name, len(frames_of(name))))

    server = MultiStreamLoop([stream("gate"), stream("yard")], {"gate": camera(), "yard": camera()}, slot_for(tmp_path),
                             FrameStats(), on_result, stop, Health(), max_batch=4, wait_s=0.002,
                             on_removed=on_removed)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: len(frames_of("gate")) >= 10 and len(frames_of("yard")) >= 10)
    with pytest.raises(AgentError, match="no source for the new streams dock"):
        server.change_streams([stream("gate"), stream("dock")], {})
    server.change_streams([stream("gate"), stream("dock")], {"dock": camera()})
    wait_until(lambda: len(frames_of("dock")) >= 10)
    at_change = len(frames_of("gate"))
    wait_until(lambda: len(frames_of("gate")) >= at_change + 10)
    stop.set()
    thread.join(10)
    server.stop()
    assert set(server.captures) == {"gate", "dock"}
    # yard was reported once, after its last result: nothing of it came later.
    assert removed == [("yard", len(frames_of("yard")))]
    # gate ('fifo') kept every frame through the change: indices 0, 1, 2, ... with no gap.
    gate = frames_of("gate")
    assert gate == list(range(len(gate)))
    figures = server.stream_figures()
    assert "yard" not in figures and figures["gate"]["skipped"] == figures["gate"]["stale"] == 0
    with pytest.raises(AgentError, match="at least one stream"):
        server.change_streams([], {})
