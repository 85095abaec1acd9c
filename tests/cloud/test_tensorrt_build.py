"""TensorRT: what can be checked without a GPU (availability reasons, profiles, names, targets, the absent path)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cloud import export_pipeline, tensorrt_build
from cloud.config import ExportConfig
from cloud.errors import ExportError
from cloud.export_pipeline import export_and_verify
from cloud.tensorrt_build import EngineInfo, build_engine, engine_file_name, gpu_slug, profile_shapes
from shared.names import check_file_name
from tests.fixtures.tiny_classifier import LABELS, SHAPE, trained_tiny


def test_missing_package_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise ImportError("No module named 'tensorrt'")

    monkeypatch.setattr(tensorrt_build, "_import_tensorrt", missing)
    reason = tensorrt_build.tensorrt_available()
    assert reason is not None and "not installed" in reason


def test_broken_libraries_are_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("libnvinfer.so.10: cannot open shared object file")

    monkeypatch.setattr(tensorrt_build, "_import_tensorrt", broken)
    reason = tensorrt_build.tensorrt_available()
    assert reason is not None and "libnvinfer" in reason


def test_dynamic_batch_profile_spans_1_to_max() -> None:
    assert profile_shapes((-1, 3, 224, 224), max_batch=8) == ((1, 3, 224, 224), (1, 3, 224, 224), (8, 3, 224, 224))
    assert profile_shapes((-1, 1, 28, 28), max_batch=16, opt_batch=4)[1] == (4, 1, 28, 28)


def test_fixed_shapes_profile_is_that_shape() -> None:
    assert profile_shapes((2, 3, 8, 8), max_batch=8) == ((2, 3, 8, 8),) * 3


def test_profiles_refuse_what_an_engine_cannot_take() -> None:
    with pytest.raises(ExportError, match="dynamic beyond the batch"):
        profile_shapes((-1, 3, -1, -1), max_batch=8)
    with pytest.raises(ExportError, match="opt batch"):
        profile_shapes((-1, 3, 8, 8), max_batch=4, opt_batch=8)


@pytest.mark.parametrize(
    ("gpu", "slug"),
    [("NVIDIA GeForce RTX 4090", "nvidia-geforce-rtx-4090"), ("Orin", "orin"),
     ("NVIDIA H100 80GB HBM3", "nvidia-h100-80gb-hbm3"), ("../../etc", "etc"), ("???", "gpu")],
)
def test_engine_names_are_safe_package_file_names(gpu: str, slug: str) -> None:
    assert gpu_slug(gpu) == slug
    assert check_file_name(engine_file_name(gpu)) == f"model.{slug}.engine"


def test_engine_info_becomes_the_manifest_target(tmp_path: Path) -> None:
    shapes = profile_shapes((-1, 3, 8, 8), 8)
    info = EngineInfo(tmp_path / "e", "Orin", "8.7", "10.3.0", "12.6", True, shapes)
    target = info.to_target()
    assert (target.device, target.gpu_name, target.compute_capability) == ("tensorrt", "Orin", "8.7")
    assert (target.tensorrt_version, target.cuda_version) == ("10.3.0", "12.6")


def test_build_without_tensorrt_raises_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_build, "tensorrt_available", lambda: "the tensorrt package is not installed")
    with pytest.raises(ExportError, match="not installed"):
        build_engine(tmp_path / "model.fp32.onnx", tmp_path / "model.x.engine")
    assert list(tmp_path.iterdir()) == []


def _export(tmp: Path, tensorrt: str) -> export_pipeline.ExportReport:
    t = trained_tiny()
    cfg = ExportConfig.model_validate(
        {"precisions": ["fp32"], "latency_runs": 10, "golden_samples": 4, "tensorrt": tensorrt}
    )
    return export_and_verify(t.model, SHAPE, LABELS, t.test_inputs, t.test_labels, t.calib_inputs, cfg, tmp)


def test_absent_tensorrt_in_auto_mode_logs_one_line_and_builds_no_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(export_pipeline, "tensorrt_available", lambda: "no CUDA GPU is visible to torch")
    with caplog.at_level(logging.INFO):
        report = _export(tmp_path, "auto")
    lines = [r.getMessage() for r in caplog.records if "TensorRT" in r.getMessage()]
    assert lines == ["no TensorRT engine built: no CUDA GPU is visible to torch"]
    assert [v.precision for v in report.variants] == ["fp32"] and not report.rejected
    assert not list(tmp_path.glob("*.engine"))


def test_absent_tensorrt_when_required_fails_the_export_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_pipeline, "tensorrt_available", lambda: "no CUDA GPU is visible to torch")
    with pytest.raises(ExportError, match="tensorrt: required, but no CUDA GPU"):
        _export(tmp_path, "required")
    assert list(tmp_path.iterdir()) == []


def test_off_never_asks_for_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_be_called() -> str:
        raise AssertionError("tensorrt_available called with tensorrt: off")

    monkeypatch.setattr(export_pipeline, "tensorrt_available", must_not_be_called)
    assert not any(n.startswith("tensorrt") for n in _export(tmp_path, "off").notes)
