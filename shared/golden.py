"""golden.npz, the smoke-test samples a package carries: one format, written by the trainer, read by every device.

Arrays: ``inputs`` float32 (N, *input shape), already preprocessed; ``labels`` int64 (N,), the trained model's
top-1; ``logits`` float32 (N, classes), the trained model's outputs (optional for readers). The file is a plain
.npz: it is never unpickled, so a hostile package cannot run code by shipping object arrays.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOLDEN_FILE = "golden.npz"
REQUIRED_ARRAYS = ("inputs", "labels")


@dataclass(frozen=True)
class GoldenSet:
    """The arrays of golden.npz, checked against each other and the manifest."""

    inputs: np.ndarray
    labels: np.ndarray
    logits: np.ndarray | None


def golden_arrays(inputs: np.ndarray, logits: np.ndarray, labels: np.ndarray | None = None) -> GoldenSet:
    """The set to write: float32 inputs and logits, int64 labels (top-1 of logits unless given); ValueError if unfit."""
    if logits.ndim != 2 or inputs.ndim < 2 or inputs.shape[0] != logits.shape[0] or inputs.shape[0] == 0:
        raise ValueError(f"{inputs.shape[0] if inputs.ndim else 0} inputs for {len(logits)} logit rows")
    chosen = logits.argmax(axis=1) if labels is None else labels
    golden = GoldenSet(
        inputs=np.ascontiguousarray(inputs, dtype=np.float32),
        labels=np.asarray(chosen).astype(np.int64),
        logits=np.ascontiguousarray(logits, dtype=np.float32),
    )
    return check_golden(golden, count=golden.inputs.shape[0], classes=logits.shape[1])


def golden_bytes(golden: GoldenSet) -> bytes:
    """The .npz bytes of a checked set (no pickles, so any device can read it with allow_pickle=False)."""
    arrays = {"inputs": golden.inputs, "labels": golden.labels}
    if golden.logits is not None:
        arrays["logits"] = golden.logits
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def read_golden(path: Path, *, count: int, classes: int) -> GoldenSet:
    """Read golden.npz without ever unpickling and check it holds `count` samples of `classes` classes."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"golden samples {path.name} cannot be read safely: {exc}") from exc
    missing = sorted(set(REQUIRED_ARRAYS) - arrays.keys())
    if missing:
        raise ValueError(f"golden samples {path.name} lack arrays {missing}")
    golden = GoldenSet(arrays["inputs"], arrays["labels"], arrays.get("logits"))
    return check_golden(golden, count=count, classes=classes)


def check_golden(golden: GoldenSet, *, count: int, classes: int) -> GoldenSet:
    """The set with int64 labels when dtypes and shapes fit `count` samples of `classes` classes; ValueError if not."""
    inputs, labels, logits = golden.inputs, golden.labels, golden.logits
    if inputs.dtype != np.float32 or inputs.ndim < 2 or inputs.shape[0] != count:
        raise ValueError(f"golden inputs are {inputs.dtype}{inputs.shape}, expected float32 with {count} samples")
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"golden labels are {labels.dtype}{labels.shape}, expected {count} integers")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"golden labels fall outside the {classes} classes of the manifest")
    if logits is not None and (logits.shape != (count, classes) or not np.issubdtype(logits.dtype, np.floating)):
        raise ValueError(f"golden logits are {logits.dtype}{logits.shape}, expected float ({count}, {classes})")
    return GoldenSet(inputs, labels.astype(np.int64), logits)
