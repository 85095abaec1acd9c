"""The shadow check on its own: sampling every Nth frame, agreement per window, drops when busy, no previous version."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge.capture import Capture
from edge.config import SyntheticSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, ServingModel, prepare
from edge.pipeline import FrameResult, Pipeline
from edge.postprocess import Prediction
from edge.shadow import ShadowCheck
from edge.sources.factory import open_source
from edge.supervise import Health
from shared.errors import EdgeferryError
from shared.manifest import Manifest
from shared.metrics import unknown_metrics
from shared.tasks import Detection
from tests.edge.detection_package import HW, build_detection_package, golden_inputs
from tests.edge.fake_model import FakeModel
from tests.edge.simple_ort import SimpleOrtModel
from tests.edge.tiny_onnx import manifest_for, write_classifier


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    return manifest_for(write_classifier(tmp_path / "m.onnx"))


def serving(model: FakeModel, manifest: Manifest) -> ServingModel:
    return prepare(model, manifest, manifest.variants[0], warm_up=False)


def result(index: int, label: str, version: int, tensor: np.ndarray | None = None) -> FrameResult:
    if tensor is None:
        tensor = np.zeros((1, 1, 28, 28), np.float32)
    return FrameResult(index, 0.0, "test", version, Prediction(int(label), label, 0.9, ((label, 0.9),)), tensor=tensor)


def check_with(shadow_model: ServingModel | None, every: int | None = 2, queue_size: int = 2) -> ShadowCheck:
    shadow = ShadowCheck(lambda: every, lambda served: shadow_model, Health(), queue_size=queue_size)
    shadow.update(2)
    return shadow


def test_agreement_is_the_share_of_equal_top1_per_window(manifest: Manifest) -> None:
    shadow = check_with(serving(FakeModel(3), manifest))
    for i, label in enumerate(["3", "3", "3", "7"]):
        shadow.compare(result(i, label, 2))
    assert shadow.metrics() == {"shadow_frames": 4.0, "shadow_agreement": 0.75}
    # The window closed: an empty one reports no frames and no agreement (not a NaN or a stale figure).
    assert shadow.metrics() == {"shadow_frames": 0.0}
    assert unknown_metrics({"shadow_frames": 1.0, "shadow_agreement": 1.0}) == []


def test_results_of_another_version_than_the_served_one_are_not_compared(manifest: Manifest) -> None:
    model = FakeModel(3)
    shadow = check_with(serving(model, manifest))
    shadow.compare(result(0, "3", 1))
    assert model.runs == 0 and shadow.metrics() == {"shadow_frames": 0.0}


def test_no_previous_version_means_no_shadow_and_no_figures(manifest: Manifest) -> None:
    shadow = check_with(None)
    assert shadow.shadow_version is None
    assert not any(shadow.wants(i) for i in range(10))
    assert shadow.metrics() == {}


def test_shadow_off_in_config_loads_nothing(manifest: Manifest) -> None:
    loaded: list[int] = []

    def load(served: int) -> ServingModel | None:
        loaded.append(served)
        return serving(FakeModel(3), manifest)

    shadow = ShadowCheck(lambda: None, load, Health())
    shadow.update(2)
    assert loaded == [] and shadow.metrics() == {}


def test_a_previous_version_that_fails_to_load_leaves_the_check_off(manifest: Manifest) -> None:
    def load(served: int) -> ServingModel | None:
        raise EdgeferryError("v1 is corrupt")

    shadow = ShadowCheck(lambda: 2, load, Health())
    shadow.update(2)
    assert shadow.shadow_version is None and not shadow.wants(0)


def test_a_new_switch_closes_the_old_shadow_and_stop_closes_the_last(manifest: Manifest) -> None:
    first, second = FakeModel(3), FakeModel(4)
    models = iter([serving(first, manifest), serving(second, manifest)])
    shadow = ShadowCheck(lambda: 2, lambda served: next(models), Health())
    shadow.update(2)
    shadow.update(3)
    assert first.closed.is_set() and not second.closed.is_set()
    shadow.close()
    assert second.closed.is_set()


def test_a_busy_shadow_drops_samples_and_counts_them(manifest: Manifest) -> None:
    shadow = check_with(serving(FakeModel(3), manifest), queue_size=2)
    for i in range(5):
        shadow.submit(result(i, "3", 2))
    assert shadow.drops == 3


def test_the_shadow_thread_compares_what_was_submitted(manifest: Manifest) -> None:
    shadow = check_with(serving(FakeModel(3), manifest))
    stop = threading.Event()
    thread = threading.Thread(target=shadow.run_until(stop))
    thread.start()
    try:
        shadow.submit(result(0, "3", 2))
        shadow.submit(result(2, "5", 2))
        for _ in range(200):
            if shadow.compared >= 2:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(5)
    assert shadow.metrics() == {"shadow_frames": 2.0, "shadow_agreement": 0.5}


def test_the_pipeline_keeps_a_tensor_only_on_sampled_frames(manifest: Manifest) -> None:
    shadow = check_with(serving(FakeModel(3), manifest), every=3)
    slot = ModelSlot()
    slot.install(serving(FakeModel(6), manifest))
    cfg = SyntheticSource(fps=None, frames=12, policy="all")  # type: ignore[arg-type]
    results: list[FrameResult] = []
    Pipeline(Capture(open_source(cfg), cfg), slot, results.append, FrameStats(), sample=shadow.wants).run(
        threading.Event()
    )
    sampled = [r.index for r in results if r.tensor is not None]
    assert sampled == [0, 3, 6, 9]
    # Each sample owns its copy: the preprocessor's reused buffer must not show through a later frame.
    tensors = [r.tensor for r in results if r.tensor is not None]
    assert len({id(t) for t in tensors}) == 4


def test_a_detector_shadow_reports_box_f1_against_the_previous_version(tmp_path: Path) -> None:
    det_manifest, files = build_detection_package("squares", 1)
    (tmp_path / "model.fp32.onnx").write_bytes(files["model.fp32.onnx"])
    previous = prepare(SimpleOrtModel(tmp_path / "model.fp32.onnx"), det_manifest, det_manifest.variants[0],
                       warm_up=False)
    shadow = check_with(previous)
    inputs = golden_inputs()  # samples 0..3 hold 0, 1, 2 and 3 squares
    image = np.zeros((HW, HW, 3), np.uint8)
    invented = Detection("person", 0, 0.9, (0.0, 40.0, 8.0, 48.0))
    for i in range(4):
        tensor = inputs[i : i + 1]
        truth = previous.decoder.decode(previous.model.run(tensor), (HW, HW), 1).detections or ()
        served = (*truth, invented) if i == 3 else truth
        shadow.compare(FrameResult(i, 0.0, "test", 2, None, tensor=tensor, detections=served, image=image,
                                   task="detection"))
    # 6 boxes matched of the previous version's 6 and the served one's 7: F1 = 12 / 13; the empty frame weighs nothing.
    figures = shadow.metrics()
    assert figures["shadow_frames"] == 4.0 and figures["shadow_agreement"] == pytest.approx(12 / 13)
    # A served classifier's results are not compared with a detector shadow.
    shadow.compare(result(5, "3", 2))
    assert shadow.metrics() == {"shadow_frames": 0.0}
