"""The cloud's TensorRT step without a GPU: it uses the device's probe, builder and runner (edge.backends).

No GPU exists where these tests run: TensorRT itself is faked (probe modules, the serialized-engine builder and
the runner), so what is checked is the wiring: reasons, names, targets, atomic writes, gates and the absent path.
Real engine builds and runs are not exercised here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from cloud import export_pipeline
from cloud import tensorrt_build as cloud_trt
from cloud.config import ExportConfig
from cloud.errors import ExportError
from cloud.export_pipeline import export_and_verify
from cloud.tensorrt_build import EngineInfo, build_engine, engine_file_name, gpu_slug, tensorrt_available
from edge.backends import tensorrt_build
from edge.backends.tensorrt_runtime import TensorRTRuntime
from edge.errors import BackendError
from shared.integrity import sha256_file
from shared.names import check_file_name
from tests.fixtures.tiny_classifier import LABELS, SHAPE, trained_tiny

RUNTIME = TensorRTRuntime(trt=object(), cudart=object(), version="10.3.0.30", gpu_name="NVIDIA H200",
                          compute_capability="9.0", cuda_version="12.6")


def importer_raising(exc: Exception) -> Any:
    def importer(name: str) -> ModuleType:
        raise exc

    return importer


def test_missing_package_is_a_reason_not_a_crash() -> None:
    reason = tensorrt_available(importer_raising(ImportError("No module named 'tensorrt'")))
    assert reason is not None and "pip install 'edgeferry[tensorrt]'" in reason


def test_broken_libraries_are_a_reason() -> None:
    reason = tensorrt_available(importer_raising(OSError("libnvinfer.so.10: cannot open shared object file")))
    assert reason is not None and "libnvinfer" in reason


def test_tensorrt_before_10_is_a_reason() -> None:
    old = ModuleType("tensorrt")
    old.__version__ = "8.6.1"  # type: ignore[attr-defined]
    reason = tensorrt_available(lambda name: old)
    assert reason == "TensorRT 8.6.1 is too old; engines need TensorRT 10 or newer"


@pytest.mark.parametrize(
    ("gpu", "slug"),
    [("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"), ("Orin", "orin"),
     ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"), ("../../etc", "etc"), ("???", "gpu")],
)
def test_engine_names_are_safe_package_file_names(gpu: str, slug: str) -> None:
    assert gpu_slug(gpu) == slug
    assert check_file_name(engine_file_name(gpu)) == f"model.{slug}.engine"


def test_engine_info_becomes_the_manifest_target(tmp_path: Path) -> None:
    target = EngineInfo(tmp_path / "e", "Orin", "8.7", "10.3.0", "12.6", True).to_target()
    assert (target.device, target.gpu_name, target.compute_capability) == ("tensorrt", "Orin", "8.7")
    assert (target.tensorrt_version, target.cuda_version) == ("10.3.0", "12.6")


def test_build_without_tensorrt_raises_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cloud_trt, "probe_tensorrt", lambda: (None, "cannot import tensorrt (no module)"))
    with pytest.raises(ExportError, match="cannot build a TensorRT engine: cannot import tensorrt"):
        build_engine(tmp_path / "model.fp32.onnx", tmp_path / "model.x.engine")
    assert list(tmp_path.iterdir()) == []


def test_build_uses_the_devices_builder_and_records_the_runtimes_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_build(trt: Any, onnx: bytes, **kw: Any) -> tuple[bytes, bytes]:
        calls.append({"trt": trt, "onnx": onnx, **kw})
        return b"ENGINE", b"TIMING"

    monkeypatch.setattr(tensorrt_build, "build_engine", fake_build)
    (tmp_path / "model.fp32.onnx").write_bytes(b"ONNX")
    out = tmp_path / "model.nvidia-h200.engine"
    info = build_engine(tmp_path / "model.fp32.onnx", out, RUNTIME, fp16=False, workspace=64 << 20, max_batch=4)
    assert out.read_bytes() == b"ENGINE"
    assert calls == [{"trt": RUNTIME.trt, "onnx": b"ONNX", "workspace_bytes": 64 << 20, "fp16": False, "max_batch": 4}]
    target = info.to_target()
    assert (target.gpu_name, target.compute_capability, target.tensorrt_version, target.cuda_version) == (
        "NVIDIA H200", "9.0", "10.3.0.30", "12.6"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp32.onnx", "model.nvidia-h200.engine"]


def test_a_builder_failure_is_an_export_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(trt: Any, onnx: bytes, **kw: Any) -> tuple[bytes, bytes]:
        raise BackendError("TensorRT cannot parse the ONNX model: unsupported op")

    monkeypatch.setattr(tensorrt_build, "build_engine", failing)
    (tmp_path / "model.fp32.onnx").write_bytes(b"ONNX")
    with pytest.raises(ExportError, match="cannot parse the ONNX model: unsupported op"):
        build_engine(tmp_path / "model.fp32.onnx", tmp_path / "model.x.engine", RUNTIME)
    assert [p.name for p in tmp_path.iterdir()] == ["model.fp32.onnx"]


def _export(tmp: Path, tensorrt: str) -> export_pipeline.ExportReport:
    t = trained_tiny()
    cfg = ExportConfig.model_validate(
        {"precisions": ["fp32"], "latency_runs": 10, "golden_samples": 4, "tensorrt": tensorrt}
    )
    return export_and_verify(t.model, SHAPE, LABELS, t.test_inputs, t.test_labels, t.calib_inputs, cfg, tmp)


def test_absent_tensorrt_in_auto_mode_logs_one_line_and_builds_no_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(export_pipeline, "probe_tensorrt", lambda: (None, "no CUDA device is visible (100)"))
    with caplog.at_level(logging.INFO):
        report = _export(tmp_path, "auto")
    lines = [r.getMessage() for r in caplog.records if "TensorRT" in r.getMessage()]
    assert lines == ["no TensorRT engine built: no CUDA device is visible (100)"]
    assert [v.precision for v in report.variants] == ["fp32"] and not report.rejected
    assert not list(tmp_path.glob("*.engine"))


def test_absent_tensorrt_when_required_fails_the_export_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_pipeline, "probe_tensorrt", lambda: (None, "no CUDA device is visible (100)"))
    with pytest.raises(ExportError, match="tensorrt: required, but no CUDA device"):
        _export(tmp_path, "required")
    assert list(tmp_path.iterdir()) == []


def test_off_never_asks_for_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_be_called() -> tuple[None, str]:
        raise AssertionError("probe_tensorrt called with tensorrt: off")

    monkeypatch.setattr(export_pipeline, "probe_tensorrt", must_not_be_called)
    assert not any(n.startswith("tensorrt") for n in _export(tmp_path, "off").notes)


class _OrtAsEngine:
    """Stands in for edge.backends.tensorrt_exec.TrtModel: runs the fp32 ONNX the fake builder 'compiled'."""

    opened: list[_OrtAsEngine] = []

    def __init__(self, rt: TensorRTRuntime, engine_bytes: bytes, file: str) -> None:
        self.session = ort.InferenceSession(engine_bytes, providers=["CPUExecutionProvider"])
        self.closed = False
        self.opened.append(self)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.session.get_inputs()[0].name: batch})[0])

    def close(self) -> None:
        self.closed = True


def test_an_engine_that_passes_its_gate_is_published_with_the_runtimes_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_pipeline, "probe_tensorrt", lambda: (RUNTIME, None))
    monkeypatch.setattr(tensorrt_build, "build_engine", lambda trt, onnx, **kw: (onnx, b""))
    monkeypatch.setattr(export_pipeline, "TrtModel", _OrtAsEngine)
    _OrtAsEngine.opened.clear()
    report = _export(tmp_path, "required")
    engine = next(v for v in report.variants if v.precision == "tensorrt")
    assert engine.file == "model.nvidia-h200.engine"
    assert engine.sha256 == sha256_file(tmp_path / engine.file)
    assert (engine.target.gpu_name, engine.target.tensorrt_version) == ("NVIDIA H200", "10.3.0.30")
    assert engine.metrics.agreement == 1.0 and engine.metrics.latency_ms_p50 > 0
    assert [m.closed for m in _OrtAsEngine.opened] == [True]
