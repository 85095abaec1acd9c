"""Run to completion: an idle stream's frames go capture -> result on the capture thread, a backlog goes through the
queue to the frame thread, and both paths give the same results for the same frames without losing any."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import edge.capture
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.capture import Capture, waited_for_frame
from edge.config import SyntheticSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, prepare
from edge.pipeline import FrameResult, Pipeline, RunSummary
from edge.sources.synthetic import draw
from shared.tasks import Prediction
from tests.edge.fake_model import FakeModel
from tests.edge.gated_source import GatedSource
from tests.edge.tiny_onnx import manifest_for, write_classifier

FRAMES = 12
SETTLE_S = 30.0


class Recorder:
    """on_result: every result, and the name of the thread that produced it."""

    def __init__(self) -> None:
        self.results: list[FrameResult] = []
        self.threads: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, result: FrameResult) -> None:
        with self.changed:
            self.results.append(result)
            self.threads.append(threading.current_thread().name)
            self.changed.notify_all()


def images(count: int = FRAMES) -> list[np.ndarray]:
    """Different camera-like frames, so a mixed-up order or a wrong input shows in the scores."""
    return [draw("digits", i, 48, 64) for i in range(count)]


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.001)


@contextmanager
def running(source: GatedSource, slot: ModelSlot, rec: Recorder) -> Iterator[tuple[Capture, list[RunSummary]]]:
    """A capture on the gated source and the pipeline on its own 'frames' thread, ended by the source's end."""
    cfg = SyntheticSource(fps=None, frames=1, policy="all", queue_size=64)  # type: ignore[arg-type]
    capture = Capture(source, cfg)
    pipe = Pipeline(capture, slot, rec, FrameStats(), top_k=3)
    summaries: list[RunSummary] = []
    thread = threading.Thread(target=lambda: summaries.append(pipe.run(threading.Event())), name="frames")
    thread.start()
    try:
        yield capture, summaries
    finally:
        thread.join(SETTLE_S)
        capture.stop()
    assert not thread.is_alive()


@pytest.fixture
def idle_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capture thread learns whether a read waited from the gated source instead of its clocks."""
    sources: list[GatedSource] = []
    real_init = Capture.__init__

    def init(self: Capture, source: GatedSource, *args: object, **kwargs: object) -> None:
        sources.append(source)
        real_init(self, source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Capture, "__init__", init)
    monkeypatch.setattr(edge.capture, "waited_for_frame", lambda wall, cpu: sources[-1].last_read_waited)


def onnx_slot(tmp_path: Path) -> ModelSlot:
    path = write_classifier(tmp_path / "m.onnx", favour=3, seed=7)
    manifest = manifest_for(path)
    slot = ModelSlot()
    slot.swap(OnnxRuntimeBackend().load(path, manifest.variants[0], manifest), manifest, manifest.variants[0])
    return slot


def one_at_a_time(source: GatedSource, capture: Capture, rec: Recorder, frames: range) -> None:
    """Release each frame only once the previous one's result is out and the frame loop holds no frame."""
    for i in frames:
        wait_until(lambda: len(rec.results) == i and capture._loop_idle,  # noqa: B023 - used within the iteration
                   f"result {i - 1} and an idle loop")
        source.release()


def predictions(rec: Recorder) -> list[tuple[int, Prediction | None, int]]:
    return [(r.index, r.prediction, r.version) for r in rec.results]


def test_an_idle_stream_runs_each_frame_to_completion_on_its_capture_thread(
    tmp_path: Path, idle_waits: None
) -> None:
    slot = onnx_slot(tmp_path)
    idle, backlog = Recorder(), Recorder()
    source = GatedSource(images())
    with running(source, slot, idle) as (capture, summaries):
        one_at_a_time(source, capture, idle, range(FRAMES))
    assert summaries[0].frames == FRAMES and summaries[0].errors == 0
    assert set(idle.threads) == {"capture-gated"}  # no hand-off: the thread that read a frame published it
    assert (capture.inline_frames, capture.queued_frames) == (FRAMES, 0)
    # The same frames all at once: every read finds its frame ready, so each goes through the queue.
    source = GatedSource(images())
    source.release(FRAMES)
    with running(source, slot, backlog) as (capture, summaries):
        pass
    assert set(backlog.threads) == {"frames"} and capture.inline_frames == 0
    assert predictions(idle) == predictions(backlog)
    assert len({p.score for _, p, _ in predictions(idle) if p is not None}) > 1  # the frames really differ


def test_a_backlog_switches_to_the_queue_and_back_without_losing_a_result(
    tmp_path: Path, idle_waits: None
) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    manifest = manifest_for(path)
    unblock = threading.Event()

    class SlowOnce(FakeModel):
        def run(self, batch: np.ndarray) -> np.ndarray:
            if self.runs == 2:  # run 1 is the warm-up: frame 1 takes long, like a slow inference
                unblock.wait(SETTLE_S)
            return super().run(batch)

    model = SlowOnce(4)
    slot = ModelSlot()
    slot.install(prepare(model, manifest, manifest.variants[0]))
    rec = Recorder()
    source = GatedSource(images(9))
    with running(source, slot, rec) as (capture, summaries):
        one_at_a_time(source, capture, rec, range(2))  # frames 0 and 1 find everything idle
        wait_until(lambda: model.runs == 2, "frame 1 in inference")
        source.release(4)  # frames 2-5 arrive while frame 1 is still being inferred: a backlog
        unblock.set()
        one_at_a_time(source, capture, rec, range(6, 9))  # idle again
    assert [r.index for r in rec.results] == list(range(9))
    assert all(r.prediction is not None and r.prediction.label == "4" for r in rec.results)
    on_capture = "capture-gated"
    assert rec.threads == [on_capture] * 2 + ["frames"] * 4 + [on_capture] * 3
    assert (capture.inline_frames, capture.queued_frames) == (5, 4)
    assert summaries[0].frames == 9 and summaries[0].reason == "end_of_stream"


def test_a_read_that_waited_off_the_cpu_marks_an_idle_stream() -> None:
    assert waited_for_frame(wall_s=0.030, cpu_s=0.002)  # a camera read that slept until the next frame
    assert not waited_for_frame(wall_s=0.002, cpu_s=0.002)  # a file read that only decoded a ready frame
    assert not waited_for_frame(wall_s=0.0021, cpu_s=0.002)


def test_max_frames_counts_frames_run_on_either_thread(tmp_path: Path, idle_waits: None) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    manifest = manifest_for(path)
    slot = ModelSlot()
    slot.install(prepare(FakeModel(1), manifest, manifest.variants[0]))
    rec = Recorder()
    source = GatedSource(images(10))
    cfg = SyntheticSource(fps=None, frames=1, policy="all", queue_size=64)  # type: ignore[arg-type]
    capture = Capture(source, cfg)
    pipe = Pipeline(capture, slot, rec, FrameStats())
    summaries: list[RunSummary] = []
    thread = threading.Thread(target=lambda: summaries.append(pipe.run(threading.Event(), max_frames=5)))
    thread.start()
    one_at_a_time(source, capture, rec, range(3))
    source.release(7)
    thread.join(SETTLE_S)
    capture.stop()
    assert summaries[0].reason == "max_frames" and summaries[0].frames == 5
    assert [r.index for r in rec.results] == list(range(5))


def test_an_unpaced_file_is_always_queued_even_when_a_read_looked_like_a_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On loaded cores a file read is often preempted; run inline, every frame would wait for its own decode.
    monkeypatch.setattr(edge.capture, "waited_for_frame", lambda wall, cpu: True)
    slot = onnx_slot(tmp_path)
    rec = Recorder()
    source = GatedSource(images(6))
    source.live = False  # type: ignore[misc]
    with running(source, slot, rec) as (capture, summaries):
        one_at_a_time(source, capture, rec, range(6))
    assert summaries[0].frames == 6
    assert [r.index for r in rec.results] == list(range(6))
    assert set(rec.threads) == {"frames"} and (capture.inline_frames, capture.queued_frames) == (0, 6)
