"""A tiny anomaly model built in code (no training): per-channel mean square of the normalized window, so a window
of the recipe's normal data scores about 1 per channel and a spike or a level shift scores far above."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from onnx import TensorProto, helper

from shared.integrity import sha256_bytes
from shared.manifest import MANIFEST_FILE, SIGNATURE_FILE, Golden, Manifest, version_prefix
from shared.object_store import ObjectStore
from shared.signing import sign
from tests.edge.package_factory import GOLDEN_FILE, golden_npz, publish_latest
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


GOLDEN_COUNT = 16


def errors_of(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["channel_errors"], {"input": inputs})[0])


def build_anomaly_package(name: str = "motions-anomaly", version: int = 1, *, variant_threshold: float | None = None,
                          golden_shift: float = 0.0) -> tuple[Manifest, dict[str, bytes]]:
    """Manifest and files of a signed-ready anomaly package; golden errors from the model itself (plus a shift, to
    sabotage the reference)."""
    model = anomaly_onnx().SerializeToString()
    rng = np.random.default_rng(7)
    inputs = rng.normal(size=(GOLDEN_COUNT, len(CHANNELS), WINDOW)).astype(np.float32)
    inputs[::4, 1, 5:9] += 12.0  # every 4th window has a spike: above the threshold
    errors = errors_of(model, inputs)
    labels = (errors.max(axis=1) > THRESHOLD).astype(np.int64)
    golden = golden_npz(inputs, errors + np.float32(golden_shift), labels)
    files = {GOLDEN_FILE: golden, "model.fp32.onnx": model}
    base = anomaly_manifest(variant_threshold, name=name, version=version)
    raw = base.model_dump(mode="json", by_alias=True)
    raw["variants"][0].update({"sha256": sha256_bytes(model), "bytes": len(model)})
    raw["golden"] = Golden(file=GOLDEN_FILE, sha256=sha256_bytes(golden), bytes=len(golden),
                           count=GOLDEN_COUNT).model_dump(mode="json")
    return Manifest.model_validate(raw), files


def publish_anomaly_package(store: ObjectStore, key: Ed25519PrivateKey, version: int = 1, **kw: Any) -> Manifest:
    """Publish like the trainer: files, signature, manifest and a signed latest.json."""
    manifest, files = build_anomaly_package(version=version, **kw)
    body = manifest.to_bytes()
    prefix = version_prefix(manifest.name, version)
    for fname, data in files.items():
        store.put(prefix + fname, data)
    store.put(prefix + SIGNATURE_FILE, sign(body, key))
    store.put(prefix + MANIFEST_FILE, body)
    publish_latest(store, manifest.name, version, key)
    return manifest
