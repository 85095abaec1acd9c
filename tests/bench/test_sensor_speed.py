"""bench-sensor's speed rows: each runtime runs the package bare and through the device's path on the same windows,
and a runtime that cannot run here says why instead of dropping the row."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.sensor_speed import SpeedRow, render_speed, speed_rows
from tests.edge.sensor.anomaly_package import CHANNELS, WINDOW, anomaly_manifest, write_anomaly_model


def test_every_runtime_times_bare_and_device_paths_on_the_same_windows(tmp_path: Path) -> None:
    manifest = anomaly_manifest()
    files = {manifest.variants[0].file: write_anomaly_model(tmp_path / "model.fp32.onnx")}
    raw = np.random.default_rng(0).normal(size=(30, WINDOW, len(CHANNELS))).astype(np.float32)
    rows = speed_rows(manifest, files, raw, rounds=2, cache=tmp_path / "ov")
    assert [(r.runtime, r.variant) for r in rows] == [("onnxruntime", "fp32"), ("openvino", "fp32")]
    ort_row = rows[0]
    assert ort_row.windows == 60 and ort_row.note == ""
    assert 0 < ort_row.bare_p50_ms <= ort_row.bare_p99_ms and 0 < ort_row.e2e_p50_ms <= ort_row.e2e_p99_ms
    assert ort_row.ratio == ort_row.e2e_p50_ms / ort_row.bare_p50_ms
    ov_row = rows[1]
    assert ov_row.windows == 60 or ov_row.note.startswith("not runnable"), ov_row
    table = render_speed([*rows, SpeedRow("openvino", "int8", note="not runnable: no CPU device")])
    assert table[2].startswith("| onnxruntime | fp32 | 60 |") and "x |" in table[2]
    assert table[-1] == "| openvino | int8 | - | - | - | - | - | - | - | - | not runnable: no CPU device |"
