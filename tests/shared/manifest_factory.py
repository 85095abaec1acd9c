"""A valid manifest built in code, for schema tests that need no real model."""

from __future__ import annotations

import copy
from typing import Any

from shared.manifest import Manifest, utcnow

SHA = "a" * 64


def manifest_dict(**over: Any) -> dict[str, Any]:
    """A plain dict of a valid manifest, with top-level overrides."""
    base: dict[str, Any] = {
        "name": "digits",
        "version": 3,
        "created_at": utcnow().isoformat(),
        "frameworks": {"torch": "2.13.0"},
        "inputs": [{"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "logits", "shape": ["batch", 10], "dtype": "float32", "layout": "NC"}],
        "preprocess": {
            "resize": [28, 28], "channel_order": "gray", "scale": 1 / 255, "mean": [0.13], "std": [0.31],
        },
        "labels": [str(i) for i in range(10)],
        "variants": [
            {
                "file": "model.fp32.onnx", "precision": "fp32", "sha256": SHA, "bytes": 10,
                "target": {"device": "cpu", "cpu_features": ["avx2"]},
                "metrics": {"accuracy": 0.98, "latency_ms_p50": 0.2, "latency_ms_p99": 0.4},
            }
        ],
        "golden": {"file": "golden.npz", "sha256": SHA, "bytes": 5, "count": 4},
        "train": {
            "config": {"a": 1},
            "dataset": {"name": "mnist", "sha256": SHA, "num_train": 1, "num_val": 1, "num_test": 1},
            "metrics": {"test_acc": 0.98},
            "seed": 42,
        },
    }
    base.update(over)
    return base


def make_manifest(**over: Any) -> Manifest:
    """A validated Manifest."""
    return Manifest.model_validate(manifest_dict(**over))


DETECTION_LABELS = ["person", "car", "dog"]
_DETECTION_OUTPUTS: dict[str, list[dict[str, Any]]] = {
    "yolo": [{"name": "output0", "shape": [1, 4 + len(DETECTION_LABELS), 8400], "dtype": "float32",
              "layout": "NCA"}],
    "packed": [{"name": "output0", "shape": [1, 300, 6], "dtype": "float32", "layout": "NKD"}],
    "decoded": [
        {"name": "boxes", "shape": ["batch", 100, 4], "dtype": "float32", "layout": "NKD"},
        {"name": "scores", "shape": ["batch", 100], "dtype": "float32", "layout": "NK"},
        {"name": "class_ids", "shape": ["batch", 100], "dtype": "int64", "layout": "NK"},
    ],
}


def detection_manifest_dict(fmt: str = "yolo", **over: Any) -> dict[str, Any]:
    """A valid detector's manifest as a dict: 640x640 letterboxed RGB input, 3 labels, the given head format."""
    base = manifest_dict(
        task="detection",
        head={"format": fmt},
        inputs=[{"name": "images", "shape": [1, 3, 640, 640], "dtype": "float32", "layout": "NCHW"}],
        outputs=copy.deepcopy(_DETECTION_OUTPUTS[fmt]),  # tests change shapes in place
        preprocess={"resize": [640, 640], "channel_order": "rgb", "scale": 1 / 255, "mean": [0.0] * 3,
                    "std": [1.0] * 3, "resize_mode": "letterbox", "pad_value": 114},
        labels=list(DETECTION_LABELS),
    )
    base["variants"][0]["metrics"] = {"map50": 0.91, "map50_95": 0.7, "latency_ms_p50": 5.0, "latency_ms_p99": 9.0}
    base.update(over)
    return base


def make_detection_manifest(fmt: str = "yolo", **over: Any) -> Manifest:
    """A validated detector's Manifest."""
    return Manifest.model_validate(detection_manifest_dict(fmt, **over))
