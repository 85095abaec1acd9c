"""A sensor anomaly model is prepared and served like an image model: the window recipe replaces the image
preprocess (no ManifestError from image-only paths), its input is checked against the recipe, and each raw window
decodes to a score, a verdict and the worst channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.backends.input_check import check_model_input
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.capture_prep import AheadOfTimePreprocess
from edge.errors import BackendError, SourceError
from edge.hot_swap import ModelSlot, prepare
from edge.sensor.window_prep import WindowPreprocessor
from edge.sources.base import Frame
from shared.windowing import normalize_window
from tests.edge.sensor.anomaly_package import CHANNELS, THRESHOLD, WINDOW, anomaly_manifest, write_anomaly_model


def normal_window(seed: int = 0) -> np.ndarray:
    m = anomaly_manifest()
    assert m.window is not None
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(WINDOW, len(CHANNELS))) * m.window.std + m.window.mean).astype(np.float32)


def test_an_anomaly_model_is_prepared_from_its_window_recipe_and_scores_windows(tmp_path: Path) -> None:
    manifest = anomaly_manifest()
    model = OnnxRuntimeBackend().load(write_anomaly_model(tmp_path / "m.onnx"), manifest.variants[0], manifest)
    serving = prepare(model, manifest, manifest.variants[0])
    assert isinstance(serving.preprocessor, WindowPreprocessor)
    normal = normal_window()
    faulty = normal.copy()
    faulty[5:9, 1] += 40.0  # a spike on acc_y
    for window, anomalous in ((normal, False), (faulty, True)):
        batch = serving.preprocessor(window)
        assert np.array_equal(batch[0], normalize_window(window, manifest.window))  # type: ignore[arg-type]
        decoded = serving.decoder.decode(serving.infer(batch), window.shape[:2], 1)
        assert decoded.anomaly is not None and decoded.anomaly.anomalous is anomalous
        assert decoded.anomaly.threshold == THRESHOLD
    assert decoded.anomaly is not None and CHANNELS[decoded.anomaly.channels[0]] == "acc_y"


def test_the_capture_thread_preprocesses_sensor_windows_ahead(tmp_path: Path) -> None:
    manifest = anomaly_manifest()
    model = OnnxRuntimeBackend().load(write_anomaly_model(tmp_path / "m.onnx"), manifest.variants[0], manifest)
    slot = ModelSlot()
    slot.swap(model, manifest, manifest.variants[0])
    frame = Frame(0, normal_window(), 0.0, "sensor_mqtt:imu")
    AheadOfTimePreprocess(slot)(frame)
    assert frame.tensor is not None and frame.tensor.shape == (1, len(CHANNELS), WINDOW)


def test_a_window_of_the_wrong_shape_is_a_source_error_not_a_crash() -> None:
    pre = WindowPreprocessor(anomaly_manifest().window)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match="recipe"):
        pre(np.zeros((WINDOW, 2), dtype=np.float32))


def test_a_model_whose_input_does_not_fit_the_recipe_is_refused(tmp_path: Path) -> None:
    manifest = anomaly_manifest()
    model = OnnxRuntimeBackend().load(write_anomaly_model(tmp_path / "m.onnx"), manifest.variants[0], manifest)
    other = anomaly_manifest(window={**manifest.window.model_dump(), "window": WINDOW * 2},  # type: ignore[union-attr]
                             inputs=[{"name": "input", "shape": ["batch", 3, WINDOW * 2], "dtype": "float32",
                                      "layout": "NCT"}])
    with pytest.raises(BackendError, match="axis 2 is 20 vs 40"):
        check_model_input(model, other)


def sensor_classifier(path: Path, labels: int, channels: int) -> Path:
    """input [batch, C, T] -> mean over T -> Gemm -> logits [batch, labels]: the label of the loudest channel."""
    from onnx import TensorProto, helper, numpy_helper

    weight = np.eye(labels, channels, dtype=np.float32) * 10
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2], keepdims=0),
         helper.make_node("Gemm", ["m", "W"], ["logits"], transB=1)],
        "tiny_sensor_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels, WINDOW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", labels])],
        [numpy_helper.from_array(weight, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_a_sensor_classifier_is_served_from_its_window_recipe(tmp_path: Path) -> None:
    labels = ["walking", "running", "standing"]
    base = anomaly_manifest()
    manifest = base.model_validate({
        **base.model_dump(mode="json", by_alias=True), "name": "motions", "task": "classification", "labels": labels,
        "head": {"format": "logits"},
        "outputs": [{"name": "logits", "shape": ["batch", 3], "dtype": "float32", "layout": "NC"}],
        "variants": [{**base.variants[0].model_dump(mode="json"),
                      "metrics": {"accuracy": 0.9, "latency_ms_p50": 0.1, "latency_ms_p99": 0.2}}],
    })
    path = sensor_classifier(tmp_path / "c.onnx", len(labels), len(CHANNELS))
    model = OnnxRuntimeBackend().load(path, manifest.variants[0], manifest)
    serving = prepare(model, manifest, manifest.variants[0])
    window = normal_window()
    window[:, 1] += 20.0  # acc_y far above its mean: label 1
    decoded = serving.decoder.decode(serving.infer(serving.preprocessor(window)), window.shape[:2], 2)
    assert decoded.prediction is not None and decoded.prediction.label == "running"
