"""Export end to end on a tiny trained net: every variant is built, gated, recorded; failures leave no file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cloud.config import ExportConfig
from cloud.cpu_features import CpuInfo, parse_cpu_flags
from cloud.errors import ExportError
from cloud.export_pipeline import export_and_verify
from cloud.quantize import choose_int8_plan, count_qdq
from cloud.tensorrt_build import tensorrt_available
from shared.integrity import sha256_file
from tests.fixtures.tiny_classifier import LABELS, SHAPE, trained_tiny

FAST = {"latency_runs": 20, "calibration_samples": 64, "golden_samples": 8}


def _export(tmp: Path, **cfg: object):  # type: ignore[no-untyped-def]
    t = trained_tiny()
    return export_and_verify(
        t.model, SHAPE, LABELS, t.test_inputs, t.test_labels, t.calib_inputs,
        ExportConfig.model_validate({**FAST, **cfg}), tmp,
    )


def test_every_variant_passes_and_matches_its_manifest_entry(tmp_path: Path) -> None:
    report = _export(tmp_path)
    assert [v.precision for v in report.variants] == ["fp32", "fp16", "int8"]
    for v in report.variants:
        path = tmp_path / v.file
        assert sha256_file(path) == v.sha256 and path.stat().st_size == v.bytes
        assert v.metrics.latency_ms_p50 > 0 and v.metrics.latency_ms_p99 >= v.metrics.latency_ms_p50
    fp32 = report.variants[0]
    assert fp32.metrics.agreement == 1.0 and fp32.metrics.max_abs_diff is not None
    assert fp32.metrics.max_abs_diff <= 1e-4
    int8 = report.variants[2]
    assert int8.quantization is not None and int8.quantization.reduce_range
    assert count_qdq(onnx.load(tmp_path / int8.file)) > 0
    assert report.inputs[0].shape[0] == "batch" or isinstance(report.inputs[0].shape[0], str)
    assert "fp32" in report.summary()


def test_dynamic_batch_runs_at_1_and_5(tmp_path: Path) -> None:
    report = _export(tmp_path, precisions=["fp32"])
    sess = ort.InferenceSession(str(tmp_path / report.variants[0].file), providers=["CPUExecutionProvider"])
    x = trained_tiny().test_inputs
    for n in (1, 5):
        assert sess.run(None, {"input": x[:n]})[0].shape == (n, len(LABELS))


def test_golden_samples_load_without_pickle_and_match_torch(tmp_path: Path) -> None:
    report = _export(tmp_path, precisions=["fp32"])
    g = np.load(tmp_path / report.golden.file, allow_pickle=False)
    assert g["inputs"].shape == (report.golden.count, *SHAPE) and g["inputs"].dtype == np.float32
    assert (g["logits"].argmax(1) == g["labels"]).all()
    sess = ort.InferenceSession(str(tmp_path / "model.fp32.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"input": g["inputs"]})[0], g["logits"], atol=1e-4)


def test_a_failed_gate_rejects_with_figures_and_removes_the_file(tmp_path: Path) -> None:
    report = _export(tmp_path, fp32_max_abs_diff=1e-12, precisions=["fp32", "int8"], int8_max_accuracy_drop=0.0,
                     int8_float_head="never", int8_calibration="minmax")
    rejected = {r.precision: r.reason for r in report.rejected}
    assert "fp32" in rejected and "e-12" in rejected["fp32"], rejected
    assert not (tmp_path / "model.fp32.onnx").exists()
    assert {v.precision for v in report.variants}.isdisjoint(rejected)


def test_bad_inputs_are_refused_before_any_file(tmp_path: Path) -> None:
    t = trained_tiny()
    with pytest.raises(ExportError):
        export_and_verify(t.model, SHAPE, LABELS[:2], t.test_inputs, t.test_labels, t.calib_inputs,
                          ExportConfig.model_validate(FAST), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.onnx"))


def test_int8_plan_is_deliberate_and_recorded() -> None:
    no_vnni = CpuInfo("x86_64", parse_cpu_flags("flags\t: fpu sse2 avx avx2 fma"))
    vnni = CpuInfo("x86_64", parse_cpu_flags("flags\t: sse2 avx2 avx512f avx512_vnni"))
    for cpu in (no_vnni, vnni):
        plan = choose_int8_plan("auto", cpu)
        assert plan.reduce_range and (plan.activation_type, plan.weight_type) == ("uint8", "int8")
        assert "VPMADDUBSW" in plan.reason and "avx2" in plan.reason
    assert "VNNI" in choose_int8_plan("auto", vnni).reason
    assert choose_int8_plan("u8u8", no_vnni).weight_type == "uint8"
    assert "WARNING" in choose_int8_plan("u8s8", no_vnni).reason


def test_tensorrt_absent_is_one_notice_and_required_is_an_error(tmp_path: Path) -> None:
    if tensorrt_available() is None:
        pytest.skip("TensorRT and a GPU are present: the engine build runs instead of the notice")
    report = _export(tmp_path / "a", precisions=["fp32"])
    assert any(n.startswith("tensorrt: skipped") for n in report.notes)
    with pytest.raises(ExportError, match="tensorrt: required"):
        _export(tmp_path / "b", precisions=["fp32"], tensorrt="required")
    assert not list((tmp_path / "b").glob("*.onnx"))
