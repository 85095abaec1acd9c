"""OpenVINO backend with the real runtime (the dev install has it); its absence and a failing device are simulated."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import openvino as ov
import pytest

from edge.backends.base import Hardware
from edge.backends.capabilities import hint_unfit
from edge.backends.chain import BackendChain
from edge.backends.factory import available_backends, backend_chain
from edge.backends.openvino_backend import OpenVINOBackend, brief
from edge.config import AutoBackendConfig, OpenVINOConfig
from edge.errors import BackendError
from edge.hardware import detect_hardware
from shared.manifest import Variant
from tests.edge.tiny_onnx import manifest_for, reference_logits, variant_dict, write_classifier

CPU = Hardware(cpu_features=frozenset({"sse2", "sse4_2", "avx2"}))


def variant(path: Path, precision: str = "fp32") -> Variant:
    return Variant.model_validate(variant_dict(path, precision))


@pytest.fixture
def backend(tmp_path: Path) -> OpenVINOBackend:
    return OpenVINOBackend(OpenVINOConfig(threads=1, cache_dir=tmp_path / "ov-cache"))


def test_loads_and_computes_the_models_logits_at_batch_one(tmp_path: Path, backend: OpenVINOBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx", favour=4)
    model = backend.load(path, variant(path), manifest_for(path))
    assert (model.backend, model.device, model.precision, model.inference_precision) == (  # type: ignore[attr-defined]
        "openvino", "CPU", "fp32", "f32"
    )
    assert model.input_name == "input" and model.input_shape == (1, 1, 28, 28)  # static batch of one frame
    x = np.random.default_rng(0).normal(0, 1, (1, 1, 28, 28)).astype(np.float32)
    out = model.run(x)
    assert out.dtype == np.float32 and out.shape == (1, 10)
    np.testing.assert_allclose(out, reference_logits(x, favour=4), rtol=1e-4, atol=1e-4)
    first = out.copy()
    model.run(x * 0)
    np.testing.assert_array_equal(out, first)  # a returned result is not overwritten by the next frame
    model.close()
    with pytest.raises(BackendError, match="closed"):
        model.run(x)


def test_compiled_models_are_cached_so_a_restart_does_not_recompile(tmp_path: Path) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    cache = tmp_path / "ov-cache"
    first = OpenVINOBackend(OpenVINOConfig(cache_dir=cache)).load(path, variant(path))
    assert not first.loaded_from_cache  # type: ignore[attr-defined]
    blobs = sorted(str(p.relative_to(cache)) for p in cache.rglob("*.blob"))
    assert blobs, "OpenVINO wrote no compiled model into its cache dir"
    again = OpenVINOBackend(OpenVINOConfig(cache_dir=cache)).load(path, variant(path))  # a restart
    assert again.loaded_from_cache  # type: ignore[attr-defined]
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*.blob")) == blobs
    first.close()
    again.close()


def test_each_inference_hint_compiles_into_its_own_cache(tmp_path: Path) -> None:
    """OpenVINO's cache key omits the hint: a shared cache dir would serve the f32 blob to an f16 request."""
    backend = OpenVINOBackend(OpenVINOConfig(threads=1, cache_dir=tmp_path / "c"))
    assert backend.compile_cache_dir("f32") != backend.compile_cache_dir("f16")
    path = write_classifier(tmp_path / "m.onnx")
    for hint in backend.hints():
        backend.load(path, variant(path), inference_precision=hint).close()
    assert len({p.parent for p in (tmp_path / "c").rglob("*.blob")}) == len(backend.hints())


def test_reports_devices_and_the_hints_this_cpu_supports(backend: OpenVINOBackend) -> None:
    assert "CPU" in backend.devices()
    caps = set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    assert backend.hints() == ("f32", *(h for h, c in (("bf16", "BF16"), ("f16", "FP16")) if c in caps))
    assert backend.version == ov.get_version()


@pytest.mark.parametrize("hint", ["bf16", "f16"])
def test_inference_hint_is_part_of_what_is_loaded(tmp_path: Path, backend: OpenVINOBackend, hint: str) -> None:
    here = detect_hardware()
    offered = BackendChain([backend], here).offers()[0].hints
    if hint not in backend.hints() or hint_unfit(hint, here.cpu_features) is not None:
        assert hint not in offered  # this CPU lacks it: never a candidate (the refusal path)
        return
    assert hint in offered
    path = write_classifier(tmp_path / "m.onnx", favour=2)
    model = backend.load(path, variant(path), inference_precision=hint)
    assert model.inference_precision == hint  # type: ignore[attr-defined]
    assert int(model.run(np.zeros((1, 1, 28, 28), np.float32)).argmax()) == 2


def test_can_run_fp32_and_int8_onnx_only(tmp_path: Path, backend: OpenVINOBackend) -> None:
    path = write_classifier(tmp_path / "m.onnx")
    assert backend.can_run(variant(path, "fp32"), CPU) and backend.can_run(variant(path, "int8"), CPU)
    assert not backend.can_run(variant(path, "fp16"), CPU)
    old_x86 = Hardware(cpu_features=frozenset({"sse2"}))
    assert not backend.can_run(variant(path), old_x86)


def test_unreadable_model_is_one_clear_line(tmp_path: Path, backend: OpenVINOBackend) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError) as err:
        backend.load(bad, variant(write_classifier(tmp_path / "m.onnx")))
    text = str(err.value)
    assert text.startswith("OpenVINO cannot compile m.onnx (fp32, f32) for CPU: ")
    assert "\n" not in text and "Exception from src" not in text


def test_brief_keeps_the_line_that_says_why() -> None:
    exc = RuntimeError("Exception from src/inference/src/cpp/core.cpp:117:\nCannot load library libOpenCL.so.1\n")
    assert brief(exc) == "Cannot load library libOpenCL.so.1"


def _missing_openvino(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError


def test_missing_openvino_logs_one_line_and_is_left_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _missing_openvino(monkeypatch)
    with caplog.at_level(logging.INFO):
        backends = available_backends(CPU, AutoBackendConfig(runtimes=["openvino", "onnxruntime"]))
    assert [b.name for b in backends] == ["onnxruntime"]
    lines = [r.getMessage() for r in caplog.records if "OpenVINO" in r.getMessage()]
    assert len(lines) == 1 and "install the 'openvino' extra" in lines[0]


def test_forced_openvino_that_is_missing_falls_back_to_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing_openvino(monkeypatch)
    chain = backend_chain(CPU, OpenVINOConfig())
    assert chain.name == "onnxruntime"


def test_a_config_naming_an_absent_device_is_skipped(tmp_path: Path) -> None:
    npu = OpenVINOBackend(OpenVINOConfig(device="NPU.7", cache_dir=tmp_path / "c"))
    assert not npu.available and npu.reason is not None and "has no NPU.7 device" in npu.reason


class FailingCore:
    """The real ov.Core, except that compiling fails as a broken GPU driver does."""

    def __init__(self) -> None:
        self._core = ov.Core()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)

    def compile_model(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:109:\n[GPU] device lost while compiling\n")


def failing_openvino(name: str) -> ModuleType:
    """An importer handing out openvino with a core whose compile fails."""
    assert name == "openvino"
    return SimpleNamespace(Core=FailingCore, get_version=ov.get_version)  # type: ignore[return-value]


def test_a_device_that_fails_to_compile_is_one_line_error(tmp_path: Path) -> None:
    backend = OpenVINOBackend(OpenVINOConfig(cache_dir=tmp_path / "c"), importer=failing_openvino)
    path = write_classifier(tmp_path / "m.onnx")
    expected = r"^OpenVINO cannot compile m.onnx \(fp32, f32\) for CPU: \[GPU\] device lost while compiling$"
    with pytest.raises(BackendError, match=expected):
        backend.load(path, variant(path))
