"""Sensor manifests: a window recipe instead of an image preprocess, and an anomaly head with its threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.errors import ManifestError
from shared.manifest import parse_manifest
from shared.tasks import head_for
from tests.shared.manifest_factory import manifest_dict

WINDOW = {
    "sample_rate_hz": 10.0, "window": 30, "hop": 5,
    "channels": [{"name": "acc_x", "unit": "g"}, {"name": "acc_y", "unit": "g"}],
    "mean": [0.0, 0.1], "std": [1.0, 2.0],
}


def anomaly(**over: Any) -> dict[str, Any]:
    d = manifest_dict(task="anomaly", labels=["normal", "anomaly"], preprocess=None, window=WINDOW)
    d["head"] = {"format": "reconstruction_error", "output": "channel_errors", "threshold": 0.8,
                 "percentile": 99.5, "calibration_windows": 120}
    d["inputs"] = [{"name": "input", "shape": ["batch", 2, 30], "dtype": "float32", "layout": "NCT"}]
    d["outputs"] = [{"name": "channel_errors", "shape": ["batch", 2], "dtype": "float32", "layout": "NC"}]
    d["variants"][0]["metrics"] = {"auroc": 0.9, "false_alarm_rate": 0.004, "threshold": 0.81,
                                   "latency_ms_p50": 0.1, "latency_ms_p99": 0.2}
    d.update(over)
    return d


def encode(d: dict[str, Any]) -> bytes:
    import json

    return json.dumps(d).encode()


def test_an_anomaly_manifest_round_trips_with_its_recipe_and_threshold() -> None:
    m = parse_manifest(encode(anomaly()))
    assert m.window is not None and m.window.num_channels == 2 and m.head.threshold == 0.8  # type: ignore[union-attr]
    assert m.variants[0].metrics.quality == 0.9 and m.variants[0].metrics.threshold == 0.81
    assert parse_manifest(m.to_bytes()) == m
    with pytest.raises(ManifestError, match="sensor model"):
        _ = m.preprocess
    verdicts = head_for(m).decode({"channel_errors": np.array([[0.1, 0.9], [0.2, 0.3]], dtype=np.float32)})
    assert [v.anomalous for v in verdicts] == [True, False] and verdicts[0].channels[0] == 1


@pytest.mark.parametrize(
    ("over", "wanted"),
    [
        ({"window": None}, "exactly one input recipe"),
        ({"preprocess": manifest_dict()["preprocess"]}, "exactly one input recipe"),
        ({"inputs": [{"name": "input", "shape": ["batch", 3, 30], "dtype": "float32", "layout": "NCT"}]},
         r"\[batch, 2, 30\]"),
        ({"outputs": [{"name": "channel_errors", "shape": ["batch", 5], "dtype": "float32", "layout": "NC"}]},
         r"per-channel errors \[batch, 2\]"),
    ],
)
def test_a_sensor_manifest_that_does_not_fit_its_recipe_is_refused(over: dict[str, Any], wanted: str) -> None:
    with pytest.raises(ManifestError, match=wanted):
        parse_manifest(encode(anomaly(**over)))


def test_an_anomaly_variant_without_auroc_is_refused() -> None:
    d = anomaly()
    d["variants"][0]["metrics"] = {"accuracy": 0.9, "latency_ms_p50": 0.1, "latency_ms_p99": 0.2}
    with pytest.raises(ManifestError, match="lacks auroc"):
        parse_manifest(encode(d))


def test_image_manifests_keep_their_preprocess_key() -> None:
    m = parse_manifest(encode(manifest_dict()))
    assert m.preprocess.resize == (28, 28) and b'"preprocess": {' in m.to_bytes() and m.window is None
