"""Tiny real runs: train, export FP32/FP16/INT8 that load in ONNX Runtime, gate, sign and publish a sensor package."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cloud.errors import GateError
from cloud.publish import verify_published
from cloud.sensor.calibration import calibrate_threshold
from cloud.sensor.config import SensorTrainConfig
from cloud.sensor.export import export_sensor, reduce_scores
from cloud.sensor.pipeline import SensorPipelineResult, build_manifest, run_sensor
from shared.golden import read_golden
from shared.object_store import LocalStore
from shared.signing import generate_keypair, load_public_key
from shared.task_contract import AnomalyHeadSpec

ROOT = Path(__file__).resolve().parents[3]


def recordings(root: Path, n: int, labelled: bool) -> Path:
    """Vibration-like recordings: a sine (class hum) or a square wave (class knock) on 3 channels, plus noise."""
    root.mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(96) / 20.0
    for i in range(n):
        knock = labelled and i % 2 == 1
        base = np.sign(np.sin(2 * np.pi * 1.5 * t)) if knock else np.sin(2 * np.pi * (1.0 + 0.1 * i) * t)
        values = np.stack([base, 0.5 * base + 0.2, np.cos(2 * np.pi * t)], axis=1) + rng.normal(0, 0.05, (96, 3))
        label = ",knock" if knock else ",hum"
        rows = [",".join(f"{v:.5f}" for v in row) + (label if labelled else "") for row in values]
        header = "x,y,z" + (",label" if labelled else "")
        (root / f"rec{i:02d}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return root


def config(tmp: Path, task: str, data: Path, publish: bool) -> SensorTrainConfig:
    key = tmp / "keys" / "sign.key"
    if publish:
        generate_keypair(key)
    return SensorTrainConfig.model_validate({
        "task": task,
        "data": {"source": "csv", "dir": data, "sample_rate_hz": 20, "window": 16, "hop": 8, "batch_size": 16},
        "model": {"width": 8, "latent": 4},
        "anomaly": {"min_auroc": 0.0, "max_false_alarm_rate": 1.0, "max_auroc_drop": 1.0},
        "trainer": {"max_epochs": 2, "log_dir": tmp / "runs", "progress_bar": False, "threads": 1},
        "export": {"latency_runs": 10, "calibration_samples": 32, "golden_samples": 4},
        "publish": {"enabled": publish, "store": {"uri": str(tmp / "store")}, "signing_key": str(key) if publish
                    else None, "work_dir": tmp / "build", "name": "vibration", "dev_key_dir": tmp / "devkeys"},
    })


@pytest.fixture(scope="module")
def anomaly_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[SensorPipelineResult, SensorTrainConfig, Path]:
    tmp = tmp_path_factory.mktemp("anomaly")
    cfg = config(tmp, "anomaly", recordings(tmp / "data", 10, labelled=False), publish=True)
    return run_sensor(cfg), cfg, tmp


def test_published_anomaly_variants_load_in_onnxruntime_and_reproduce_their_golden_errors(
    anomaly_run: tuple[SensorPipelineResult, SensorTrainConfig, Path],
) -> None:
    _, _, tmp = anomaly_run
    manifest = verify_published(LocalStore(tmp / "store"), "vibration", None,
                                [load_public_key(tmp / "keys" / "sign.pub")])
    assert manifest.task == "anomaly" and manifest.window is not None and manifest.window.num_channels == 3
    assert sorted(v.precision for v in manifest.variants) == ["fp16", "fp32", "int8"]
    version_dir = tmp / "store" / "models" / "vibration" / str(manifest.version)
    golden = read_golden(version_dir / manifest.golden.file, count=manifest.golden.count, classes=3)
    assert golden.logits is not None
    for variant in manifest.variants:
        session = ort.InferenceSession(str(version_dir / variant.file), providers=["CPUExecutionProvider"])
        (errors,) = session.run(["channel_errors"], {"input": golden.inputs})
        assert errors.shape == (manifest.golden.count, 3)
        assert variant.metrics.auroc is not None and variant.metrics.threshold is not None
        if variant.precision != "int8":
            np.testing.assert_allclose(errors, golden.logits, rtol=1e-2, atol=1e-4)
        # Every variant, INT8 included, gives the golden windows the reference's verdict at its own threshold.
        assert np.array_equal(errors.max(axis=1) > variant.metrics.threshold, golden.labels == 1)
    assert next(v for v in manifest.variants if v.precision == "int8").quantization is not None


def test_every_variant_alarms_on_a_stuck_and_a_dropped_channel_and_names_that_channel(
    anomaly_run: tuple[SensorPipelineResult, SensorTrainConfig, Path],
) -> None:
    result, _, tmp = anomaly_run
    manifest, recipe = result.manifest, result.train.recipe
    clean = result.train.test.inputs[:8]
    t = recipe.window
    faulty = []
    for i, window in enumerate(clean):
        channel = i % recipe.num_channels
        w = window.copy()
        if i % 2:  # stuck: the reading at a quarter of the window repeats to its end
            w[channel, t // 4 :] = w[channel, t // 4]
        else:  # dropped: the raw channel reads 0, which the recipe normalizes to a constant
            w[channel, t // 4 :] = np.float32((0.0 - recipe.mean[channel]) / recipe.std[channel])
        faulty.append((channel, w))
    inputs = np.stack([w for _, w in faulty])
    version_dir = tmp / "store" / "models" / "vibration" / str(manifest.version)
    for variant in manifest.variants:
        session = ort.InferenceSession(str(version_dir / variant.file), providers=["CPUExecutionProvider"])
        (scores,) = session.run(["channel_errors"], {"input": inputs})
        assert variant.metrics.threshold is not None
        assert np.all(scores.max(axis=1) > variant.metrics.threshold), (variant.precision, scores)
        assert list(scores.argmax(axis=1)) == [c for c, _ in faulty], variant.precision


def test_the_manifest_threshold_is_the_configured_percentile_of_held_out_normal_scores(
    anomaly_run: tuple[SensorPipelineResult, SensorTrainConfig, Path],
) -> None:
    result, _, _ = anomaly_run
    head = result.manifest.head
    assert isinstance(head, AnomalyHeadSpec) and head.percentile == 99.5
    with torch.inference_mode():
        errors = result.train.model(torch.from_numpy(result.train.val.inputs)).numpy()
    assert head.threshold == calibrate_threshold(reduce_scores(errors, head.reduce), 99.5)
    assert head.calibration_windows == len(result.train.val) > 0


def test_variants_outside_their_budget_are_rejected_and_recorded(
    anomaly_run: tuple[SensorPipelineResult, SensorTrainConfig, Path], tmp_path: Path,
) -> None:
    result, cfg, _ = anomaly_run
    tr = result.train

    def export(**anomaly: Any) -> Any:
        return export_sensor("anomaly", tr.model, tr.input_shape, tr.labels, tr.test.inputs, tr.test.labels,
                             tr.val.inputs, tr.calib_inputs, tr.anomaly, cfg.export,
                             cfg.anomaly.model_copy(update=anomaly), tmp_path / "pkg")

    strict_fp32 = export(fp32_max_rel_diff=1e-12)
    assert [r.precision for r in strict_fp32.rejected] == ["fp32"]
    assert "differ from torch" in strict_fp32.rejected[0].reason
    assert not (tmp_path / "pkg" / "model.fp32.onnx").exists()
    manifest = build_manifest(cfg, 9, tr, strict_fp32)
    assert [r.precision for r in manifest.rejected] == ["fp32"] and len(manifest.variants) == 2

    none_pass = export(min_auroc=1.0, max_false_alarm_rate=0.0, fp32_max_rel_diff=1e-12)
    if none_pass.variants:  # a perfect detector with no false alarm would pass: then the data set is too easy
        pytest.fail(f"expected every variant rejected, got {[v.precision for v in none_pass.variants]}")
    assert all("AUROC" in r.reason or "normal windows exceed" in r.reason for r in none_pass.rejected)


def test_a_classifier_is_trained_exported_and_gated_on_windows(tmp_path: Path) -> None:
    cfg = config(tmp_path, "sensor-classification", recordings(tmp_path / "data", 8, labelled=True), publish=False)
    result = run_sensor(cfg)
    m = result.manifest
    assert m.task == "classification" and m.labels == ["hum", "knock"] and m.window is not None
    assert sorted(v.precision for v in m.variants) + sorted(r.precision for r in m.rejected) == ["fp16", "fp32",
                                                                                                 "int8"]
    for v in m.variants:
        assert v.metrics.accuracy is not None and v.metrics.f1 is not None
        session = ort.InferenceSession(str(result.package_dir / v.file), providers=["CPUExecutionProvider"])
        assert session.run(None, {"input": result.train.test.inputs[:2]})[0].shape == (2, 2)


def test_a_bad_recording_stops_the_cli_in_one_line_before_anything_is_written(tmp_path: Path) -> None:
    data = recordings(tmp_path / "data", 3, labelled=False)
    (data / "rec01.csv").write_text("x,y,z\n1,2,3\n1,two,3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFERRY_")}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("edgeferry")), "train", "--task", "anomaly", "--data", str(data),
         "--store", str(tmp_path / "store"), "--data.sample_rate_hz=20",
         f"--publish.dev_key_dir={tmp_path / 'keys'}", f"--publish.work_dir={tmp_path / 'build'}",
         f"--trainer.log_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "rec01.csv line 3: column 'y' holds 'two', not a number" in lines[0]
    assert not any((tmp_path / d).exists() for d in ("store", "keys", "build", "runs"))


def test_every_variant_failing_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cloud.sensor.pipeline as pipeline

    cfg = config(tmp_path, "anomaly", recordings(tmp_path / "data", 4, labelled=False), publish=True)
    real = pipeline.export_sensor

    def reject_all(*args: Any, **kw: Any) -> Any:
        report = real(*args, **kw)
        return replace(report, variants=[], rejected=report.rejected)

    monkeypatch.setattr(pipeline, "export_sensor", reject_all)
    cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"max_epochs": 1})})
    with pytest.raises(GateError, match="no variant passed"):
        run_sensor(cfg)
    assert not LocalStore(tmp_path / "store").list("models/")
