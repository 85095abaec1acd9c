"""ONNX Runtime loads real (tiny) ONNX models, computes the right logits, and refuses what it cannot serve."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto

from edge.backends.base import Hardware
from edge.backends.input_check import check_model_input, input_mismatch
from edge.backends.onnxruntime_backend import (
    CPU_EP,
    CUDA_EP,
    OnnxRuntimeBackend,
    choose_providers,
    session_options,
)
from edge.config import OnnxRuntimeConfig
from edge.errors import BackendError
from shared.manifest import Variant
from tests.edge.tiny_onnx import manifest_for, reference_logits, variant_dict, write_classifier

CPU = Hardware(cpu_features=frozenset({"avx2"}))


@pytest.fixture
def backend() -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(OnnxRuntimeConfig(threads=1))


def variant(path: Path, precision: str = "fp32", **target: object) -> Variant:
    return Variant.model_validate(variant_dict(path, precision, **target))


def test_loads_and_computes_the_models_logits(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx", favour=4)
    model = backend.load(path, variant(path), manifest_for(path))
    assert (model.backend, model.device, model.precision, model.inference_precision) == (  # type: ignore[attr-defined]
        "onnxruntime", "cpu", "fp32", "f32"
    )
    assert (model.input_name, model.input_shape) == ("input", ("batch", 1, 28, 28))
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    out = model.run(x)
    assert out.shape == (3, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference_logits(x, favour=4), rtol=1e-4, atol=1e-4)
    assert out.argmax(axis=1).tolist() == [4, 4, 4]
    model.close()
    with pytest.raises(BackendError, match="closed"):
        model.run(x[:1])


def test_float16_input_models_take_float32_batches(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "h.onnx", favour=2, input_type=TensorProto.FLOAT16)
    out = backend.load(path, variant(path)).run(np.zeros((1, 1, 28, 28), np.float32))
    assert out.dtype == np.float32 and int(out.argmax()) == 2


def test_manifest_with_a_different_input_shape_is_rejected(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    wrong = manifest_for(path, shape=("batch", 3, 32, 32))
    with pytest.raises(BackendError, match=r"input 'input' is \[batch, 1, 28, 28\] but the manifest says "
                                           r"\[batch, 3, 32, 32\] \(axis 1 is 1 vs 3\)"):
        backend.load(path, variant(path), wrong)


def test_preprocessing_that_cannot_feed_the_model_is_rejected(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    rgb = {"resize": [28, 28], "channel_order": "rgb", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1]}
    manifest = manifest_for(path, preprocess=rgb)
    model = backend.load(path, variant(path))
    with pytest.raises(BackendError, match=r"preprocessing \(NCHW, rgb, resize 28x28\) produces \[1, 3, 28, 28\]"):
        check_model_input(model, manifest)


def test_input_name_must_match_the_manifest(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx", input_name="pixels")
    with pytest.raises(BackendError, match="named 'pixels' but the manifest says 'input'"):
        backend.load(path, variant(path), manifest_for(path))


def test_corrupt_or_missing_files_are_refused_clearly(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    good = write_classifier(tmp_path / "model.fp32.onnx")
    v = variant(good)
    good.write_bytes(os.urandom(2048))
    with pytest.raises(BackendError, match=r"ONNX Runtime cannot load model.fp32.onnx \(fp32\)"):
        backend.load(good, v)
    good.write_bytes(good.read_bytes()[:100])
    with pytest.raises(BackendError, match="cannot load"):
        backend.load(good, v)
    with pytest.raises(BackendError, match="cannot load"):
        backend.load(tmp_path / "missing.onnx", v)


def test_wrong_batch_at_run_time_is_a_backend_error(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx", shape=(1, 1, 28, 28))
    model = backend.load(path, variant(path))
    with pytest.raises(BackendError, match="inference failed"):
        model.run(np.zeros((1, 1, 14, 14), np.float32))


def test_can_run_fp32_and_int8_on_cpu_but_not_fp16_or_engines(tmp_path: Path, backend: OnnxRuntimeBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    assert backend.can_run(variant(path, "fp32"), CPU)
    assert backend.can_run(variant(path, "int8"), CPU)
    assert not backend.can_run(variant(path, "fp16", device="cuda"), CPU)
    # Even a device with a GPU needs the CUDA provider in this ORT build (the CPU wheel here has none).
    assert backend.can_run(variant(path, "fp16", device="cuda"), Hardware(cuda=True)) == backend.has_cuda
    engine = variant(path, "tensorrt", device="tensorrt", gpu_name="Orin", tensorrt_version="10.3.0")
    assert not backend.can_run(engine, Hardware(cuda=True, gpu_name="Orin", tensorrt_version="10.3.0"))


def test_provider_choice_keeps_the_requested_order_with_cpu_as_fallback() -> None:
    assert choose_providers(None, [CPU_EP]) == ([CPU_EP], [])
    assert choose_providers(None, [CUDA_EP, CPU_EP]) == ([CUDA_EP, CPU_EP], [])
    assert choose_providers([CUDA_EP, "TensorrtExecutionProvider"], [CPU_EP]) == (
        [CPU_EP],
        [CUDA_EP, "TensorrtExecutionProvider"],
    )
    assert choose_providers([CPU_EP, CUDA_EP], [CUDA_EP, CPU_EP]) == ([CPU_EP, CUDA_EP], [])
    assert choose_providers([CUDA_EP], [CUDA_EP, CPU_EP]) == ([CUDA_EP, CPU_EP], [])


def test_shape_comparison_treats_symbols_as_wildcards() -> None:
    assert input_mismatch(("batch", 1, 28, 28), (1, 1, 28, 28)) is None
    assert input_mismatch(("dynamic", 3, 224, 224), ("N", 3, 224, 224)) is None
    assert input_mismatch((1, 1, 28, 28), (4, 1, 28, 28)) == "axis 0 is 1 vs 4"
    assert input_mismatch((1, 28, 28), (1, 1, 28, 28)) == "rank 3 vs 4"


def test_the_cloud_measures_with_the_devices_session_recipe() -> None:
    from cloud.ort_session import session_options as cloud_options

    for threads, spin in ((1, True), (2, False)):
        edge, cloud = session_options(threads, spin=spin), cloud_options(threads, spin)
        fields = ("intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level",
                  "log_severity_level")
        assert [getattr(cloud, f) for f in fields] == [getattr(edge, f) for f in fields]
        assert edge.intra_op_num_threads == threads and edge.inter_op_num_threads == 1
        spinning = cloud.get_session_config_entry("session.intra_op.allow_spinning") if not spin else "1"
        assert spinning == ("1" if spin else "0")
