"""Hot swap: a prepared model replaces the served one between two frames, with nothing lost or paused."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.capture import Capture
from edge.config import OnnxRuntimeConfig, VideoFileSource
from edge.errors import AgentError, BackendError
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, prepare
from edge.pipeline import FrameResult, Pipeline
from edge.sources.factory import open_source
from shared.manifest import Manifest
from tests.edge.fake_model import FakeModel
from tests.edge.media import write_video
from tests.edge.tiny_onnx import manifest_for, write_classifier


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return manifest_for(write_classifier(tmp_path / "m.onnx"))


def test_prepare_warms_up_once_and_checks_outputs(manifest: Manifest) -> None:
    model = FakeModel()
    serving = prepare(model, manifest, manifest.variants[0])
    assert model.runs == 1
    assert serving.preprocessor.output_shape == (1, 1, 28, 28)
    assert serving.labels == tuple(manifest.labels) and serving.version == manifest.version
    with pytest.raises(BackendError, match="returns 4 values per frame, the manifest lists 10 labels"):
        prepare(FakeModel(classes=4), manifest, manifest.variants[0])
    with pytest.raises(BackendError, match="manifest says"):
        prepare(FakeModel(shape=("batch", 3, 28, 28)), manifest, manifest.variants[0])


def test_slot_counts_swaps_and_the_frame_where_each_took_effect(manifest: Manifest) -> None:
    slot = ModelSlot()
    assert slot.acquire(0) is None
    a = prepare(FakeModel(1), manifest, manifest.variants[0])
    slot.install(a)
    first = slot.acquire(0)
    assert first is a
    slot.release(a)
    assert slot.swaps == 0 and slot.last_swap_frame is None  # the first model is not a swap
    b = prepare(FakeModel(2), manifest, manifest.variants[0])
    slot.install(b)
    assert slot.swaps == 1 and slot.last_swap_at is not None and slot.last_swap_frame is None
    served = slot.acquire(7)
    assert served is b and slot.last_swap_frame == 7
    slot.release(b)
    assert slot.acquire(8) is b and slot.last_swap_frame == 7
    with pytest.raises(AgentError, match="already installed"):
        slot.install(a)


def test_old_model_is_closed_only_after_its_last_frame(manifest: Manifest) -> None:
    slot = ModelSlot()
    old_model, new_model = FakeModel(1), FakeModel(2)
    slot.install(prepare(old_model, manifest, manifest.variants[0]))
    in_flight = slot.acquire(0)  # a frame is running on the old model
    assert in_flight is not None
    slot.swap(new_model, manifest, manifest.variants[0])
    assert not old_model.closed.is_set()
    in_flight.model.run(in_flight.preprocessor(np.zeros((28, 28), np.uint8)))
    slot.release(in_flight)
    assert old_model.closed.wait(5)
    assert old_model.runs_after_close == 0
    assert not new_model.closed.is_set()
    slot.close()
    assert new_model.closed.wait(5)


def test_unused_old_model_is_closed_at_install(manifest: Manifest) -> None:
    slot = ModelSlot()
    old_model = FakeModel(1)
    slot.install(prepare(old_model, manifest, manifest.variants[0]))
    slot.swap(FakeModel(2), manifest, manifest.variants[0])
    assert old_model.closed.is_set()


def test_swap_mid_run_loses_no_frame_and_switches_at_one_boundary(tmp_path: Path) -> None:
    frames = 120
    video = write_video(tmp_path / "clip.avi", frames)
    # Two real models that disagree on every frame: A always says 3, B always says 7.
    path_a = write_classifier(tmp_path / "a.onnx", favour=3)
    path_b = write_classifier(tmp_path / "b.onnx", favour=7, seed=1)
    man_a, man_b = manifest_for(path_a, version=1), manifest_for(path_b, version=2)
    backend = OnnxRuntimeBackend(OnnxRuntimeConfig(threads=1))
    model_a = backend.load(path_a, man_a.variants[0], man_a)
    model_b = backend.load(path_b, man_b.variants[0], man_b)  # loading is the slow part; done up front

    slot = ModelSlot()
    slot.install(prepare(model_a, man_a, man_a.variants[0]))
    # A paced file (policy 'all' never drops) keeps the run long enough for the swap to land mid-stream.
    cfg = VideoFileSource(path=video, policy="all", queue_size=4, max_fps=400)
    capture = Capture(open_source(cfg), cfg)
    results: list[FrameResult] = []
    swapper = threading.Thread(target=slot.swap, args=(model_b, man_b, man_b.variants[0]))

    def on_result(r: FrameResult) -> None:
        results.append(r)
        if r.index == 10:
            swapper.start()  # from another thread, while frames keep flowing

    stats = FrameStats()
    summary = Pipeline(capture, slot, on_result, stats).run(threading.Event())
    swapper.join(10)

    assert summary.reason == "end_of_stream" and summary.errors == 0
    assert [r.index for r in results] == list(range(frames))  # every frame, once, in order
    versions = [r.version for r in results]
    switch = versions.index(2)
    assert 10 < switch < frames, "the swap should land mid-run"
    assert versions == [1] * switch + [2] * (frames - switch)  # exactly one boundary
    assert {r.prediction.label for r in results[:switch]} == {"3"}
    assert {r.prediction.label for r in results[switch:]} == {"7"}
    assert slot.swaps == 1 and slot.last_swap_frame == switch
    assert stats.swaps == 1 and stats.values()["swap_pause_ms"] > 0
    assert stats.frames == frames and capture.drops == 0
    slot.close()
