"""Tiny ONNX classifiers built with onnx.helper (no torch), and manifests that describe them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from shared.integrity import sha256_file
from shared.manifest import Manifest
from tests.shared.manifest_factory import manifest_dict

CLASSES = 10


def weights(features: int, favour: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small random weights and a bias that makes `favour` the top class for inputs of moderate size."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((features, CLASSES)) * 1e-3).astype(np.float32)
    b = np.zeros(CLASSES, dtype=np.float32)
    b[favour] = 10.0
    return w, b


def write_classifier(
    path: Path,
    *,
    shape: tuple[int | str, ...] = ("batch", 1, 28, 28),
    favour: int = 0,
    input_name: str = "input",
    input_type: int = TensorProto.FLOAT,
    seed: int = 0,
) -> Path:
    """logits = Flatten(x) @ W + b; the class `favour` wins for any input in the usual normalised range."""
    features = int(np.prod([d for d in shape[1:] if isinstance(d, int)]))
    w, b = weights(features, favour, seed)
    nodes = []
    source = input_name
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [input_name], ["x32"], to=TensorProto.FLOAT))
        source = "x32"
    nodes += [
        helper.make_node("Flatten", [source], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, input_type, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], CLASSES])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def reference_logits(x: np.ndarray, favour: int, seed: int = 0) -> np.ndarray:
    """What write_classifier's model computes, in numpy."""
    flat = x.reshape(x.shape[0], -1).astype(np.float64)
    w, b = weights(flat.shape[1], favour, seed)
    return flat @ w + b


def variant_dict(path: Path, precision: str = "fp32", **target: Any) -> dict[str, Any]:
    """A manifest variant entry for a file on disk."""
    return {
        "file": path.name,
        "precision": precision,
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "target": target or {"device": "cpu"},
        "metrics": {"accuracy": 0.9, "latency_ms_p50": 0.1, "latency_ms_p99": 0.2},
    }


def manifest_for(
    path: Path,
    *,
    version: int = 1,
    shape: tuple[int | str, ...] = ("batch", 1, 28, 28),
    preprocess: dict[str, Any] | None = None,
    input_name: str = "input",
) -> Manifest:
    """A manifest whose single fp32 variant is the model at path."""
    pre = preprocess or {"resize": [28, 28], "channel_order": "gray", "scale": 1 / 255, "mean": [0.5], "std": [0.5]}
    return Manifest.model_validate(
        manifest_dict(
            version=version,
            inputs=[{"name": input_name, "shape": list(shape), "dtype": "float32", "layout": "NCHW"}],
            preprocess=pre,
            variants=[variant_dict(path)],
        )
    )
