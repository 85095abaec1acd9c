"""The shadow check on sensor windows: a canary's anomaly model and the incumbent score the same windows, and the
canary reports whether they reach the same verdict (each at the threshold it serves with) and how far the scores
are apart relative to the incumbent's threshold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.hot_swap import ServingModel, prepare
from edge.pipeline import FrameResult
from edge.sensor.config import AlertConfig
from edge.sensor.window_shadow import WindowShadow
from edge.shadow import ShadowCheck
from edge.supervise import Health
from shared.metrics import unknown_metrics
from tests.edge.sensor.anomaly_package import CHANNELS, THRESHOLD, WINDOW, anomaly_manifest, write_anomaly_model

# A broken calibration: far below the scores of normal windows (about 1), so every window is "anomalous".
BROKEN = 0.01


def served(tmp: Path, version: int, **manifest: Any) -> ServingModel:
    m = anomaly_manifest(version=version, **manifest)
    model = OnnxRuntimeBackend().load(write_anomaly_model(tmp / f"v{version}.onnx"), m.variants[0], m)
    return prepare(model, m, m.variants[0], warm_up=False)


def windows(n: int, seed: int = 0) -> list[np.ndarray]:
    """Normalised normal windows as the preprocessor hands them to the model: [1, C, T]."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1, len(CHANNELS), WINDOW)).astype(np.float32) for _ in range(n)]


def run(incumbent: ServingModel, canary: ServingModel, tensors: list[np.ndarray],
        alerts: AlertConfig | None = None) -> dict[str, float]:
    """The canary serves, the incumbent shadows it on every window; the telemetry window's shadow figures."""
    cfg = alerts or AlertConfig()
    shadow = ShadowCheck(lambda: 1, lambda _: incumbent, Health(), windows=WindowShadow(lambda: cfg, lambda: canary))
    shadow.update(canary.version)
    for i, tensor in enumerate(tensors):
        decoded = canary.decoder.decode(canary.infer(tensor), None, 1)
        shadow.compare(FrameResult(i, 0.0, "sensor_mqtt:imu", canary.version, None, tensor=tensor, task="anomaly",
                                   anomaly=decoded.anomaly))
    out = shadow.metrics()
    assert unknown_metrics(out) == []
    return out


def test_the_same_model_at_the_same_threshold_agrees_on_every_window(tmp_path: Path) -> None:
    out = run(served(tmp_path, 1), served(tmp_path, 2), windows(20))
    assert out == {"shadow_frames": 20.0, "shadow_agreement": 1.0, "shadow_score_diff": 0.0}


def test_a_broken_threshold_disagrees_on_normal_windows_though_the_scores_are_equal(tmp_path: Path) -> None:
    out = run(served(tmp_path, 1), served(tmp_path, 2, variant_threshold=BROKEN), windows(20))
    assert out["shadow_frames"] == 20 and out["shadow_agreement"] == 0.0 and out["shadow_score_diff"] == 0.0


def test_the_score_difference_is_in_units_of_the_incumbents_threshold(tmp_path: Path) -> None:
    # Version 2's head reduces by the mean of the channels' errors, version 1's by the max: lower scores, same verdicts.
    incumbent, canary = served(tmp_path, 1), served(tmp_path, 2, head={
        "format": "reconstruction_error", "output": "channel_errors", "threshold": THRESHOLD, "reduce": "mean",
        "percentile": 99.5, "calibration_windows": 200})
    tensors = windows(10)
    errors = [np.asarray(incumbent.infer(t)).reshape(-1) for t in tensors]
    expected = float(np.mean([(e.max() - e.mean()) / THRESHOLD for e in errors]))
    out = run(incumbent, canary, tensors)
    assert out["shadow_agreement"] == 1.0 and abs(out["shadow_score_diff"] - expected) < 1e-6


def test_a_threshold_override_in_the_device_config_applies_to_both_models(tmp_path: Path) -> None:
    out = run(served(tmp_path, 1), served(tmp_path, 2, variant_threshold=BROKEN), windows(10),
              AlertConfig(threshold=THRESHOLD))
    assert out["shadow_agreement"] == 1.0


def test_an_incumbent_with_another_window_recipe_compares_nothing(tmp_path: Path) -> None:
    recipe = anomaly_manifest().window
    assert recipe is not None
    other = served(tmp_path, 1, window={**recipe.model_dump(), "sample_rate_hz": 100.0})
    out = run(other, served(tmp_path, 2), windows(5))
    assert out == {"shadow_frames": 0.0}
