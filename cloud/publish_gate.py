"""Whether a trained classifier may be published: above the accuracy floor, and not worse than the version it would
replace (the published latest.json) on this run's own test split. A refused model is not published; the reason is
one line (GateError). Runs after export and verification, before anything is written to the store."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cloud.errors import GateError
from cloud.ort_session import open_session, predict
from cloud.verify import accuracy
from shared.errors import EdgeferryError, StoreNotFoundError
from shared.integrity import verify_file
from shared.manifest import (
    MANIFEST_FILE,
    SIGNATURE_FILE,
    Manifest,
    Preprocess,
    latest_key,
    latest_signature_key,
    version_prefix,
)
from shared.object_store import ObjectStore
from shared.package import verify_manifest
from shared.pointer import verify_pointer
from shared.preprocessing import affine_constants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incumbent:
    """The published version a new one would replace, and its FP32 accuracy on the new test split."""

    version: int
    accuracy: float


def check_floor(name: str, new_accuracy: float, floor: float, samples: int) -> None:
    """GateError when the new model's test accuracy is below publish.min_accuracy."""
    if not new_accuracy >= floor:  # NaN (no test images) fails too
        raise GateError(
            f"{name} not published: test accuracy {new_accuracy:.4f} on {samples} held-out images is below "
            f"publish.min_accuracy {floor:g}; add images or epochs, or lower publish.min_accuracy"
        )


def check_not_worse(name: str, new_accuracy: float, incumbent: Incumbent | None, max_drop: float,
                    samples: int) -> None:
    """GateError when the new model is worse than the published one on the same split by more than max_drop."""
    if incumbent is None or new_accuracy >= incumbent.accuracy - max_drop:
        return
    raise GateError(
        f"{name} not published: test accuracy {new_accuracy:.4f} is below v{incumbent.version}'s "
        f"{incumbent.accuracy:.4f} on the same {samples} held-out images (publish.max_accuracy_drop {max_drop:g}); "
        "train longer or on more data, or set publish.compare_published=false to publish anyway"
    )


def comparable(old: Preprocess, new: Preprocess) -> str | None:
    """Why the published model cannot read this split's pixels, or None when it can (same size, channels, layout)."""
    for field in ("resize", "channel_order", "layout", "resize_mode"):
        a, b = _plain(getattr(old, field)), _plain(getattr(new, field))
        if a != b:
            return f"its preprocess.{field} is {a}, the new model's {b}"
    return None


def _plain(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def renormalize(inputs: np.ndarray, new: Preprocess, old: Preprocess) -> np.ndarray:
    """The same images as the old recipe feeds them: undo the new normalization (exact uint8 pixels), apply old's."""
    a_new, b_new = affine_constants(new)
    a_old, b_old = affine_constants(old)
    shape = (1, -1, 1, 1) if new.layout == "NCHW" else (1, 1, 1, -1)
    pixels = np.clip(np.rint((inputs - b_new.reshape(shape)) / a_new.reshape(shape)), 0, 255)
    return (pixels * a_old.reshape(shape) + b_old.reshape(shape)).astype(np.float32)


def published_incumbent(
    store: ObjectStore,
    name: str,
    trusted: list[Ed25519PublicKey],
    labels: list[str],
    preprocess: Preprocess,
    test_inputs: np.ndarray,
    test_labels: np.ndarray,
) -> Incumbent | None:
    """The version latest.json names, evaluated (its FP32 variant, checked like a device) on this run's test split;
    None (with one log line) when nothing is published or it cannot be compared."""
    try:
        body = store.get(latest_key(name))
    except StoreNotFoundError:
        return None
    try:
        signature: bytes | None = store.get(latest_signature_key(name))
    except StoreNotFoundError:
        signature = None
    try:
        latest, _ = verify_pointer(body, signature, trusted, allow_unsigned=False)
        prefix = version_prefix(name, latest.version)
        raw = store.get(prefix + MANIFEST_FILE)
        old, _ = verify_manifest(raw, store.get(prefix + SIGNATURE_FILE), trusted)
    except EdgeferryError as exc:
        raise GateError(
            f"{name} not published: cannot check the published version it would replace ({exc}); sign with the key "
            "that published it, or set publish.compare_published=false"
        ) from exc
    why = _not_comparable(old, labels, preprocess)
    if why is not None:
        log.info("not compared with published %s v%d: %s", name, old.version, why)
        return None
    fp32 = next(v for v in old.variants if v.precision == "fp32")
    with tempfile.TemporaryDirectory(prefix="edgeferry-gate-") as tmp:
        path = Path(tmp) / fp32.file
        try:
            store.download(prefix + fp32.file, path, fp32.bytes)
            verify_file(path, fp32.sha256, fp32.bytes)
        except EdgeferryError as exc:
            raise GateError(f"{name} not published: published v{old.version}'s {fp32.file} cannot be checked: {exc}"
                            ) from exc
        logits = predict(open_session(path), renormalize(test_inputs, preprocess, old.preprocess))
    found = Incumbent(old.version, accuracy(logits, test_labels))
    log.info("published %s v%d (fp32) scores %.4f on this run's %d held-out images", name, found.version,
             found.accuracy, len(test_labels))
    return found


def _not_comparable(old: Manifest, labels: list[str], preprocess: Preprocess) -> str | None:
    if old.task != "classification":
        return f"it is a {old.task} model"
    if list(old.labels) != list(labels):
        return "its labels differ from this data set's"
    if not any(v.precision == "fp32" for v in old.variants):
        return "it has no fp32 variant"
    return comparable(old.preprocess, preprocess)
