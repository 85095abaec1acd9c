"""Real signed model packages from tiny ONNX graphs (no torch), published into any store with the real layout."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from onnx import TensorProto, helper, numpy_helper

from shared.integrity import sha256_bytes
from shared.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    DatasetInfo,
    Golden,
    Latest,
    Manifest,
    Preprocess,
    Target,
    TensorSpec,
    TrainInfo,
    Variant,
    VariantMetrics,
    latest_key,
    latest_signature_key,
    utcnow,
    version_prefix,
)
from shared.object_store import ObjectStore
from shared.pointer import sign_pointer
from shared.signing import sign

DEFAULT_LABELS: tuple[str, ...] = tuple(str(i) for i in range(10))
GOLDEN_FILE = "golden.npz"
GOLDEN_COUNT = 16
OPSET = 17
IR_VERSION = 8  # understood by every onnxruntime we support

Sabotage = Literal["nan", "labels", "shape"]


@dataclass(frozen=True)
class KeyPair:
    """A signing key and its public half."""

    private: Ed25519PrivateKey
    public: Ed25519PublicKey


def new_keypair() -> KeyPair:
    """A fresh ed25519 pair."""
    key = Ed25519PrivateKey.generate()
    return KeyPair(key, key.public_key())


def variant_file(precision: str) -> str:
    """The file name a precision gets in a package."""
    return f"model.{precision}.onnx"


def onnx_model(
    *,
    input_hw: tuple[int, int] = (8, 8),
    num_classes: int = 10,
    seed: int = 0,
    bias: float = 0.0,
    nan: bool = False,
    extra_output_dim: bool = False,
) -> onnx.ModelProto:
    """input [batch,1,H,W] -> Flatten -> Gemm -> logits [batch, classes]; bias shifts class 0's logit."""
    h, w = input_hw
    rng = np.random.default_rng(seed)
    classes = num_classes + (1 if extra_output_dim else 0)
    weight = rng.normal(0, 1, size=(classes, h * w)).astype(np.float32)
    b = rng.normal(0, 0.1, size=(classes,)).astype(np.float32)
    b[0] += bias
    if nan:
        b[0] = np.nan
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"], transB=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def with_external_weight(model: onnx.ModelProto, location: str, offset: int = 0, length: int | None = None) -> None:
    """Mark the Gemm weight as stored externally at location (raw data dropped), as a hostile package would."""
    weight = next(t for t in model.graph.initializer if t.name == "W")
    size = len(weight.raw_data)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    del weight.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length or size))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value


def run_onnx(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Logits of a serialized model from onnxruntime on CPU."""
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["logits"], {"input": inputs})[0])


def golden_npz(inputs: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> bytes:
    """golden.npz bytes with the arrays a device expects."""
    buf = io.BytesIO()
    np.savez(buf, inputs=inputs, logits=logits, labels=labels)
    return buf.getvalue()


def make_manifest(
    name: str,
    version: int,
    variants: list[Variant],
    golden: Golden,
    *,
    input_hw: tuple[int, int] = (8, 8),
    labels: Sequence[str] = DEFAULT_LABELS,
) -> Manifest:
    """A complete manifest around given variants and golden file."""
    h, w = input_hw
    return Manifest(
        name=name,
        version=version,
        created_at=utcnow(),
        frameworks={"onnx": onnx.__version__, "onnxruntime": ort.__version__},
        inputs=[TensorSpec(name="input", shape=["batch", 1, h, w], dtype="float32", layout="NCHW")],
        outputs=[TensorSpec(name="logits", shape=["batch", len(labels)], dtype="float32", layout="NC")],
        preprocess=Preprocess(resize=(h, w), channel_order="gray", scale=1 / 255, mean=[0.0], std=[1.0]),
        labels=list(labels),
        variants=variants,
        golden=golden,
        train=TrainInfo(
            config={"factory": True},
            dataset=DatasetInfo(name="synthetic", sha256="0" * 64, num_train=1, num_val=1, num_test=GOLDEN_COUNT),
            metrics={},
            seed=0,
        ),
    )


def make_variant(
    file: str, data: bytes, precision: str = "fp32", accuracy: float = 0.98, target: Target | None = None
) -> Variant:
    """A Variant entry describing data."""
    return Variant.model_validate(
        {
            "file": file,
            "precision": precision,
            "sha256": sha256_bytes(data),
            "bytes": len(data),
            "target": (target or Target(device="cuda" if precision == "fp16" else "cpu")).model_dump(),
            "metrics": VariantMetrics(accuracy=accuracy, latency_ms_p50=0.1, latency_ms_p99=0.2).model_dump(),
        }
    )


def _flip_byte(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]


def build_package(
    name: str,
    version: int,
    *,
    precisions: Sequence[str] = ("fp32",),
    accuracy: dict[str, float] | None = None,
    bias: float = 0.0,
    input_hw: tuple[int, int] = (8, 8),
    labels: Sequence[str] = DEFAULT_LABELS,
    sabotage: dict[str, Sabotage] | None = None,  # precision -> 'nan' outputs, wrong 'labels', one logit too many
    external_location: str | None = None,  # fp32 weight stored "externally" at this location
    seed: int = 0,
) -> tuple[Manifest, dict[str, bytes]]:
    """Manifest and file contents of a package; golden outputs come from the clean fp32 model via onnxruntime."""
    sabotage = sabotage or {}
    accuracy = accuracy or {}
    clean = onnx_model(input_hw=input_hw, num_classes=len(labels), seed=seed, bias=bias).SerializeToString()
    rng = np.random.default_rng(1000 + version)
    inputs = rng.normal(0, 1, size=(GOLDEN_COUNT, 1, *input_hw)).astype(np.float32)
    logits = run_onnx(clean, inputs)
    golden_bytes = golden_npz(inputs, logits, logits.argmax(axis=1).astype(np.int64))
    files: dict[str, bytes] = {GOLDEN_FILE: golden_bytes}
    variants = []
    for precision in precisions:
        how = sabotage.get(precision)
        model = onnx_model(
            input_hw=input_hw,
            num_classes=len(labels),
            seed=seed + (1 if how == "labels" else 0),
            bias=bias,
            nan=how == "nan",
            extra_output_dim=how == "shape",
        )
        if external_location is not None and precision == "fp32":
            with_external_weight(model, external_location)
        data = model.SerializeToString()
        fname = variant_file(precision)
        files[fname] = data
        variants.append(make_variant(fname, data, precision, accuracy.get(precision, 0.98)))
    golden = Golden(file=GOLDEN_FILE, sha256=sha256_bytes(golden_bytes), bytes=len(golden_bytes), count=GOLDEN_COUNT)
    manifest = make_manifest(name, version, variants, golden, input_hw=input_hw, labels=labels)
    return manifest, files


def _hostile_body(manifest: Manifest, unsafe_name: str) -> bytes:
    """Canonical manifest bytes whose first variant file is renamed to an unsafe name (the schema would refuse)."""
    raw = manifest.model_dump(mode="json")
    raw["variants"][0]["file"] = unsafe_name
    return json.dumps(raw, indent=2, sort_keys=True).encode() + b"\n"


def make_package(
    store: ObjectStore,
    name: str,
    version: int,
    key: Ed25519PrivateKey | KeyPair,
    *,
    corrupt: str | None = None,  # file (or 'manifest.json') whose stored bytes get one byte flipped after signing
    traversal: bool | str = False,  # True or an unsafe name ('/etc/passwd', 'a/b.onnx') for the first variant
    unsigned: bool = False,  # publish no signature object
    bad_signature: bool = False,  # a signature over other bytes
    bias: float = 0.0,  # added to class 0's logit, so versions can differ in output
    input_hw: tuple[int, int] = (8, 8),
    labels: Sequence[str] = DEFAULT_LABELS,
    precisions: Sequence[str] = ("fp32",),
    accuracy: dict[str, float] | None = None,  # recorded accuracy per precision (default 0.98)
    sabotage: dict[str, Sabotage] | None = None,
    external_location: str | None = None,
    extra_files: dict[str, bytes] | None = None,  # more objects under the version, not named by the manifest
    manifest_version: int | None = None,  # sign a manifest of this version but publish it under `version` (replay)
    latest: bool = True,  # move latest.json to this version
) -> Manifest:
    """Publish a package like the trainer does (files, signature, manifest, latest.json), optionally hostile."""
    private = key.private if isinstance(key, KeyPair) else key
    manifest, files = build_package(
        name,
        manifest_version or version,
        precisions=precisions,
        accuracy=accuracy,
        bias=bias,
        input_hw=input_hw,
        labels=labels,
        sabotage=sabotage,
        external_location=external_location,
    )
    body = manifest.to_bytes()
    if traversal:
        body = _hostile_body(manifest, "../x.onnx" if traversal is True else traversal)
    signature = sign(body + b"tampered" if bad_signature else body, private)
    if corrupt == MANIFEST_FILE:
        body = _flip_byte(body)
    elif corrupt is not None:
        if corrupt not in files:
            raise ValueError(f"cannot corrupt {corrupt!r}: the package has {sorted(files)}")
        files[corrupt] = _flip_byte(files[corrupt])
    prefix = version_prefix(name, version)
    for fname, data in {**files, **(extra_files or {})}.items():
        store.put(prefix + fname, data)
    if not unsigned:
        store.put(prefix + SIGNATURE_FILE, signature)
    store.put(prefix + MANIFEST_FILE, body)
    if latest:
        publish_latest(store, name, version, None if unsigned else private)
    return manifest


def publish_latest(
    store: ObjectStore,
    name: str,
    version: int,
    key: Ed25519PrivateKey | KeyPair | None,
    *,
    ttl: timedelta = timedelta(days=30),
    manifest_sha256: str | None = None,
) -> Latest:
    """Move models/<name>/latest.json to a version already in the store, signed (signature first) unless key is None."""
    body = store.get(version_prefix(name, version) + MANIFEST_FILE)
    now = utcnow()
    pointer = Latest(
        name=name,
        version=version,
        manifest_sha256=manifest_sha256 or sha256_bytes(body),
        published_at=now,
        expires_at=now + ttl if key is not None else None,
    )
    if key is not None:
        signed = sign_pointer(pointer, key.private if isinstance(key, KeyPair) else key)
        store.put(latest_signature_key(name), signed.signature)
    store.put(latest_key(name), pointer.to_bytes())
    return pointer


def write_package_dir(directory: Path, manifest: Manifest, files: dict[str, bytes], key: Ed25519PrivateKey) -> Path:
    """Write a package as an installed directory (manifest, signature, files) for local-only tests."""
    directory.mkdir(parents=True, exist_ok=True)
    body = manifest.to_bytes()
    (directory / MANIFEST_FILE).write_bytes(body)
    (directory / SIGNATURE_FILE).write_bytes(sign(body, key))
    for fname, data in files.items():
        (directory / fname).write_bytes(data)
    return directory
