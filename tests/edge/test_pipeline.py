"""The frame loop end to end: every frame of a finite source, stage timings, waiting, bad frames, bounds."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.capture import Capture
from edge.config import SensorCsvSource, SyntheticSource, VideoFileSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, prepare
from edge.pipeline import FrameResult, Pipeline
from edge.sources.factory import open_source
from shared.manifest import Manifest
from shared.metrics import STAGES, unknown_metrics
from tests.edge.fake_model import FakeModel
from tests.edge.media import write_video
from tests.edge.tiny_onnx import manifest_for, write_classifier


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return manifest_for(write_classifier(tmp_path / "m.onnx"))


def slot_with(model: FakeModel, manifest: Manifest) -> ModelSlot:
    slot = ModelSlot()
    slot.install(prepare(model, manifest, manifest.variants[0]))
    return slot


def synthetic(frames: int | None, policy: str = "all") -> Capture:
    cfg = SyntheticSource(fps=None, frames=frames, policy=policy)  # type: ignore[arg-type]
    return Capture(open_source(cfg), cfg)


def test_every_frame_of_a_file_is_inferred_and_timed(tmp_path: Path, manifest: Manifest) -> None:
    cfg = VideoFileSource(path=write_video(tmp_path / "v.avi", 30), policy="all", queue_size=2)
    results: list[FrameResult] = []
    stats = FrameStats()
    summary = Pipeline(Capture(open_source(cfg), cfg), slot_with(FakeModel(6), manifest), results.append, stats).run(
        threading.Event()
    )
    assert summary.reason == "end_of_stream" and summary.frames == 30 and summary.errors == 0
    assert [r.index for r in results] == list(range(30))
    assert all(r.prediction.label == "6" and r.version == manifest.version for r in results)
    assert results[0].source.startswith("file:")
    values = stats.values()
    assert unknown_metrics(values) == []
    assert {f"{s}_ms_p{p}" for s in STAGES for p in (50, 95, 99)} <= values.keys()
    assert values["frames"] == 30 and values["fps"] > 0 and values["swaps"] == 0
    assert values["e2e_ms_p50"] >= values["infer_ms_p50"] >= 0


def test_real_onnx_model_on_a_synthetic_camera(tmp_path: Path) -> None:
    path = write_classifier(tmp_path / "m.onnx", favour=9)
    manifest = manifest_for(path)
    from edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    model = OnnxRuntimeBackend().load(path, manifest.variants[0], manifest)
    slot = ModelSlot()
    slot.swap(model, manifest, manifest.variants[0])
    results: list[FrameResult] = []
    summary = Pipeline(synthetic(25), slot, results.append, FrameStats(), top_k=2).run(threading.Event())
    assert summary.frames == 25
    assert all(r.prediction.label == "9" and len(r.prediction.top_k) == 2 for r in results)


def test_sensor_windows_run_through_the_same_pipeline(tmp_path: Path, manifest: Manifest) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("".join(",".join(str((r * 7 + c) % 13) for c in range(5)) + "\n" for r in range(40)))
    cfg = SensorCsvSource(path=csv, window=10, stride=5, policy="all")
    results: list[FrameResult] = []
    summary = Pipeline(Capture(open_source(cfg), cfg), slot_with(FakeModel(1), manifest), results.append,
                       FrameStats()).run(threading.Event())
    assert summary.reason == "end_of_stream"
    assert [r.index for r in results] == list(range(7))  # windows start at rows 0, 5, ..., 30


def test_frames_before_any_model_are_counted_as_waiting() -> None:
    stats = FrameStats()
    summary = Pipeline(synthetic(12), ModelSlot(), lambda r: None, stats).run(threading.Event())
    assert summary.reason == "end_of_stream"
    assert (summary.frames, summary.waiting) == (0, 12)
    assert stats.waiting == 12 and stats.values()["frames"] == 0


def test_a_failing_frame_is_counted_and_the_loop_goes_on(
    manifest: Manifest, caplog: pytest.LogCaptureFixture
) -> None:
    model = FakeModel(2, fail_runs=frozenset({4, 5, 9}))  # run 1 is the warm-up
    results: list[FrameResult] = []
    stats = FrameStats()
    summary = Pipeline(synthetic(20), slot_with(model, manifest), results.append, stats).run(threading.Event())
    assert summary.frames == 17 and summary.errors == 3 and stats.errors == 3
    assert [r.index for r in results] == [i for i in range(20) if i not in (2, 3, 7)]
    failures = [r for r in caplog.records if "failed on model version" in r.getMessage()]
    assert len(failures) == 1  # later errors within the interval are counted, not logged


def test_a_failing_publish_callback_does_not_stop_the_stream(manifest: Manifest) -> None:
    def on_result(r: FrameResult) -> None:
        if r.index == 3:
            raise RuntimeError("queue full")

    summary = Pipeline(synthetic(8), slot_with(FakeModel(), manifest), on_result, FrameStats()).run(threading.Event())
    assert (summary.frames, summary.errors) == (7, 1)


def test_max_frames_duration_and_stop_end_an_endless_source(manifest: Manifest) -> None:
    slot = slot_with(FakeModel(), manifest)
    capture = synthetic(None, policy="latest")
    pipe = Pipeline(capture, slot, lambda r: None, FrameStats())
    first = pipe.run(threading.Event(), max_frames=5)
    assert (first.reason, first.frames) == ("max_frames", 5)
    assert pipe.run(threading.Event(), duration_s=0.05).reason == "duration"
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert pipe.run(stop).reason == "stopped"
    capture.stop()


def test_no_torch_is_imported_by_the_edge_runtime() -> None:
    code = (
        "import sys, edge.pipeline, edge.capture, edge.backends.factory, edge.backends.tensorrt_build, "
        "edge.backends.tensorrt_exec, edge.sources.factory; "
        "bad = [m for m in ('torch', 'lightning', 'pytorch_lightning', 'tensorrt') if m in sys.modules]; "
        "sys.exit(f'imported: {bad}' if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or result.stdout



def test_a_detector_serves_boxes_in_frame_pixels_through_its_task_head(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from edge.config import ImageDirSource
    from tests.edge.detection_package import HW, SIZE, build_detection_package, preprocess
    from tests.edge.simple_ort import SimpleOrtModel

    manifest, files = build_detection_package("squares", 1)
    # Letterbox wide frames into the square input: a frame twice the input's width is halved and padded.
    manifest = Manifest.model_validate(
        {**manifest.model_dump(mode="json"), "preprocess": {**preprocess().model_dump(), "resize_mode": "letterbox"}}
    )
    (tmp_path / "model.fp32.onnx").write_bytes(files["model.fp32.onnx"])
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, x in enumerate((20, 44, 68)):
        image = np.full((HW, 2 * HW, 3), 20, np.uint8)
        image[16 : 16 + 2 * SIZE, x : x + 2 * SIZE] = 255
        cv2.imwrite(str(frames / f"{i}.png"), image)
    cfg = ImageDirSource(path=frames, policy="all")
    slot = ModelSlot()
    slot.install(prepare(SimpleOrtModel(tmp_path / "model.fp32.onnx"), manifest, manifest.variants[0]))
    results: list[FrameResult] = []
    summary = Pipeline(Capture(open_source(cfg), cfg), slot, results.append, FrameStats()).run(threading.Event())
    assert summary.frames == 3 and summary.errors == 0
    assert all(r.task == "detection" and r.prediction is None and r.frame_hw == (HW, 2 * HW) for r in results)
    assert [[(d.label, d.box) for d in r.detections or ()] for r in results] == [
        [("person", (float(x), 16.0, float(x + 2 * SIZE), 16.0 + 2 * SIZE))] for x in (20, 44, 68)
    ]
    assert results[0].summary() == "1 object (person)"
