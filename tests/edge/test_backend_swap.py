"""Serving through OpenVINO end to end, and a hot swap from ONNX Runtime to OpenVINO with no frame dropped."""

from __future__ import annotations

import threading
from pathlib import Path

from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.openvino_backend import OpenVINOBackend
from edge.capture import Capture
from edge.config import OnnxRuntimeConfig, OpenVINOConfig, VideoFileSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, prepare
from edge.pipeline import FrameResult, Pipeline
from edge.sources.factory import open_source
from tests.edge.media import write_video
from tests.edge.tiny_onnx import manifest_for, write_classifier


def test_swap_from_onnxruntime_to_openvino_mid_run_loses_no_frame(tmp_path: Path) -> None:
    frames = 120
    video = write_video(tmp_path / "clip.avi", frames)
    path_a = write_classifier(tmp_path / "a.onnx", favour=3)
    path_b = write_classifier(tmp_path / "b.onnx", favour=7, seed=1)
    man_a, man_b = manifest_for(path_a, version=1), manifest_for(path_b, version=2)
    model_a = OnnxRuntimeBackend(OnnxRuntimeConfig(threads=1)).load(path_a, man_a.variants[0], man_a)
    ov = OpenVINOBackend(OpenVINOConfig(threads=1, cache_dir=tmp_path / "ov"))
    model_b = ov.load(path_b, man_b.variants[0], man_b)

    slot = ModelSlot()
    slot.install(prepare(model_a, man_a, man_a.variants[0]))
    cfg = VideoFileSource(path=video, policy="all", queue_size=4, max_fps=400)
    capture = Capture(open_source(cfg), cfg)
    results: list[FrameResult] = []
    backends: list[str] = []
    swapper = threading.Thread(target=slot.swap, args=(model_b, man_b, man_b.variants[0]))

    def on_result(r: FrameResult) -> None:
        results.append(r)
        current = slot.current
        backends.append(current.model.backend if current is not None else "")
        if r.index == 10:
            swapper.start()

    summary = Pipeline(capture, slot, on_result, FrameStats()).run(threading.Event())
    swapper.join(10)

    assert summary.reason == "end_of_stream" and summary.errors == 0
    assert [r.index for r in results] == list(range(frames))  # every frame, once, in order
    versions = [r.version for r in results]
    switch = versions.index(2)
    assert 10 < switch < frames, "the swap should land mid-run"
    assert versions == [1] * switch + [2] * (frames - switch)
    assert {r.prediction.label for r in results[:switch]} == {"3"}  # ONNX Runtime's model
    assert {r.prediction.label for r in results[switch:]} == {"7"}  # OpenVINO's model, served to the end
    assert backends[-1] == "openvino"
    assert slot.swaps == 1 and capture.drops == 0
    slot.close()
