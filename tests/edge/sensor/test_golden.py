"""The smoke test of an anomaly package on its golden windows: FP32/FP16 must reproduce the reference errors within
1%, INT8 only the verdict at its own threshold; the runtime choice scores candidates on that verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.errors import PackageRejected
from edge.golden_agreement import AnomalyVerdictScorer, scorer_for
from edge.golden_check import load_golden, run_smoke_test
from tests.edge.sensor.anomaly_package import GOLDEN_FILE, build_anomaly_package


def test_an_anomaly_model_that_reproduces_its_reference_passes(tmp_path: Path) -> None:
    manifest, files = build_anomaly_package()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    model = OnnxRuntimeBackend().load(tmp_path / "model.fp32.onnx", manifest.variants[0], manifest)
    result = run_smoke_test(model, tmp_path / GOLDEN_FILE, manifest)
    assert result.samples == result.matched == 16 and result.max_abs_diff is not None
    golden = load_golden(tmp_path / GOLDEN_FILE, manifest)
    scorer = scorer_for(golden, manifest)
    assert isinstance(scorer, AnomalyVerdictScorer)
    assert scorer.agreement(scorer.predict(model, golden.inputs), scorer.reference) == 1.0


def test_errors_off_the_reference_fail_fp32_but_int8_is_judged_on_its_verdict(tmp_path: Path) -> None:
    manifest, files = build_anomaly_package(golden_shift=0.5)
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    model = OnnxRuntimeBackend().load(tmp_path / "model.fp32.onnx", manifest.variants[0], manifest)
    with pytest.raises(PackageRejected, match="differ from the reference"):
        run_smoke_test(model, tmp_path / GOLDEN_FILE, manifest)
    assert run_smoke_test(model, tmp_path / GOLDEN_FILE, manifest, precision="int8").matched == 16
    with pytest.raises(PackageRejected, match="verdict at threshold 1000"):
        run_smoke_test(model, tmp_path / GOLDEN_FILE, manifest, precision="int8", threshold=1000.0)
