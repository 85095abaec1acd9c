"""A tiny anomaly model built in code (no training): per-channel mean square of the normalized window, so a window
of the recipe's normal data scores about 1 per channel and a spike or a level shift scores far above."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
from onnx import TensorProto, helper

from shared.manifest import Manifest
from tests.shared.manifest_factory import manifest_dict

CHANNELS = ("acc_x", "acc_y", "acc_z")
RATE, WINDOW, HOP = 50.0, 20, 10
THRESHOLD = 3.0
OPSET, IR_VERSION = 17, 8


def window_recipe() -> dict[str, Any]:
    return {"sample_rate_hz": RATE, "window": WINDOW, "hop": HOP,
            "channels": [{"name": c, "unit": "g"} for c in CHANNELS], "mean": [0.0, 0.5, 1.0], "std": [1.0, 0.5, 2.0]}


def anomaly_onnx() -> onnx.ModelProto:
    """input [batch, C, T] -> x*x -> mean over T -> channel_errors [batch, C]."""
    c = len(CHANNELS)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "input"], ["sq"]),
         helper.make_node("ReduceMean", ["sq"], ["channel_errors"], axes=[2], keepdims=0)],
        "tiny_anomaly",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", c, WINDOW])],
        [helper.make_tensor_value_info("channel_errors", TensorProto.FLOAT, ["batch", c])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def anomaly_manifest(variant_threshold: float | None = None, **over: Any) -> Manifest:
    c = len(CHANNELS)
    d = manifest_dict(name="motions-anomaly", task="anomaly", labels=["normal", "anomaly"], preprocess=None,
                      window=window_recipe())
    d["head"] = {"format": "reconstruction_error", "output": "channel_errors", "threshold": THRESHOLD,
                 "percentile": 99.5, "calibration_windows": 200}
    d["inputs"] = [{"name": "input", "shape": ["batch", c, WINDOW], "dtype": "float32", "layout": "NCT"}]
    d["outputs"] = [{"name": "channel_errors", "shape": ["batch", c], "dtype": "float32", "layout": "NC"}]
    metrics: dict[str, Any] = {"auroc": 0.99, "false_alarm_rate": 0.005, "latency_ms_p50": 0.1, "latency_ms_p99": 0.2}
    if variant_threshold is not None:
        metrics["threshold"] = variant_threshold
    d["variants"][0]["metrics"] = metrics
    d.update(over)
    return Manifest.model_validate(d)


def write_anomaly_model(path: Path) -> Path:
    path.write_bytes(anomaly_onnx().SerializeToString())
    return path
