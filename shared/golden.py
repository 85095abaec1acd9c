"""golden.npz, the smoke-test samples a package carries: one format per task, written by the trainer, read by devices.

Classification arrays: ``inputs`` float32 (N, *input shape), already preprocessed; ``labels`` int64 (N,), the
trained model's top-1; ``logits`` float32 (N, classes), the trained model's outputs (optional for readers).
Detection arrays: ``inputs`` as above; the FP32 reference model's detections on them, decoded by its task head
(shared.tasks) at the manifest's default thresholds, boxes xyxy in model-input pixels, padded to K rows:
``boxes`` float32 (N, K, 4), ``scores`` float32 (N, K), ``class_ids`` int64 (N, K), ``counts`` int64 (N,) valid
rows. A device decodes a variant's outputs the same way and compares with detection_agreement (F1).
The file is a plain .npz: it is never unpickled, so a hostile package cannot run code by shipping object arrays.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.tasks.agreement import Agreement, detection_agreement
from shared.tasks.detection import Detection, Detections, to_detections

GOLDEN_FILE = "golden.npz"
REQUIRED_ARRAYS = ("inputs", "labels")
DETECTION_ARRAYS = ("inputs", "boxes", "scores", "class_ids", "counts")


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


@dataclass(frozen=True)
class DetectionGoldenSet:
    """A detector's golden samples: inputs and the FP32 reference detections on them (model-input pixels)."""

    inputs: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    counts: np.ndarray

    def detections(self, labels: Sequence[str]) -> list[Detections]:
        """The reference detections of each sample, best score first."""
        return [
            to_detections(self.boxes[i, :n], self.scores[i, :n], self.class_ids[i, :n], labels)
            for i, n in enumerate(self.counts.tolist())
        ]

    def agreement(self, candidate: Sequence[Sequence[Detection]], labels: Sequence[str]) -> Agreement:
        """How a variant's detections on these inputs (decoded without geometry) agree with the reference."""
        return detection_agreement(self.detections(labels), candidate)


def detection_golden_arrays(inputs: np.ndarray, detections: Sequence[Sequence[Detection]]) -> DetectionGoldenSet:
    """The detection set to write from preprocessed inputs and the reference head's results on them."""
    n = inputs.shape[0] if inputs.ndim else 0
    if inputs.ndim < 2 or n == 0 or n != len(detections):
        raise ValueError(f"{n} inputs for {len(detections)} detection results")
    k = max((len(d) for d in detections), default=0)
    boxes = np.zeros((n, k, 4), dtype=np.float32)
    scores = np.zeros((n, k), dtype=np.float32)
    class_ids = np.full((n, k), -1, dtype=np.int64)
    for i, frame in enumerate(detections):
        for j, d in enumerate(frame):
            boxes[i, j], scores[i, j], class_ids[i, j] = d.box, d.score, d.class_id
    golden = DetectionGoldenSet(
        inputs=np.ascontiguousarray(inputs, dtype=np.float32),
        boxes=boxes,
        scores=scores,
        class_ids=class_ids,
        counts=np.array([len(d) for d in detections], dtype=np.int64),
    )
    classes = int(class_ids.max()) + 1 if class_ids.size and class_ids.max() >= 0 else 1
    return check_detection_golden(golden, count=n, classes=classes)


def golden_bytes(golden: GoldenSet | DetectionGoldenSet) -> bytes:
    """The .npz bytes of a checked set (no pickles, so any device can read it with allow_pickle=False)."""
    if isinstance(golden, DetectionGoldenSet):
        arrays = {name: getattr(golden, name) for name in DETECTION_ARRAYS}
    else:
        arrays = {"inputs": golden.inputs, "labels": golden.labels}
        if golden.logits is not None:
            arrays["logits"] = golden.logits
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def read_golden(path: Path, *, count: int, classes: int) -> GoldenSet:
    """Read golden.npz without ever unpickling and check it holds `count` samples of `classes` classes."""
    arrays = _load(path, REQUIRED_ARRAYS)
    golden = GoldenSet(arrays["inputs"], arrays["labels"], arrays.get("logits"))
    return check_golden(golden, count=count, classes=classes)


def read_detection_golden(path: Path, *, count: int, classes: int) -> DetectionGoldenSet:
    """Read a detector's golden.npz without ever unpickling and check it against the manifest."""
    arrays = _load(path, DETECTION_ARRAYS)
    golden = DetectionGoldenSet(*(arrays[name] for name in DETECTION_ARRAYS))
    return check_detection_golden(golden, count=count, classes=classes)


def read_task_golden(path: Path, *, task: str, count: int, classes: int) -> GoldenSet | DetectionGoldenSet:
    """The golden set in the form of the manifest's task; ValueError for a task without a golden form."""
    if task == "classification":
        return read_golden(path, count=count, classes=classes)
    if task == "detection":
        return read_detection_golden(path, count=count, classes=classes)
    if task == "anomaly":
        # Windows, the FP32 reference's per-channel errors as logits [N, C] (classes = C), labels 1 above threshold.
        return read_golden(path, count=count, classes=classes)
    raise ValueError(f"golden samples have no form for task {task!r}")


def _load(path: Path, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"golden samples {path.name} cannot be read safely: {exc}") from exc
    missing = sorted(set(required) - arrays.keys())
    if missing:
        raise ValueError(f"golden samples {path.name} lack arrays {missing}")
    return arrays


def check_detection_golden(golden: DetectionGoldenSet, *, count: int, classes: int) -> DetectionGoldenSet:
    """The set when dtypes and shapes fit `count` samples of `classes` classes; ValueError naming the misfit if not."""
    g = golden
    if g.inputs.dtype != np.float32 or g.inputs.ndim < 2 or g.inputs.shape[0] != count:
        raise ValueError(f"golden inputs are {g.inputs.dtype}{g.inputs.shape}, expected float32 with {count} samples")
    if g.boxes.dtype != np.float32 or g.boxes.ndim != 3 or g.boxes.shape[0] != count or g.boxes.shape[2] != 4:
        raise ValueError(f"golden boxes are {g.boxes.dtype}{g.boxes.shape}, expected float32 ({count}, K, 4)")
    k = g.boxes.shape[1]
    if g.scores.dtype != np.float32 or g.scores.shape != (count, k):
        raise ValueError(f"golden scores are {g.scores.dtype}{g.scores.shape}, expected float32 ({count}, {k})")
    if g.class_ids.dtype != np.int64 or g.class_ids.shape != (count, k):
        raise ValueError(f"golden class_ids are {g.class_ids.dtype}{g.class_ids.shape}, expected int64 ({count}, {k})")
    if g.counts.dtype != np.int64 or g.counts.shape != (count,) or (g.counts < 0).any() or (g.counts > k).any():
        raise ValueError(f"golden counts are {g.counts.dtype}{g.counts.shape}, expected {count} integers 0..{k}")
    valid = np.arange(k)[None, :] < g.counts[:, None]
    ids = g.class_ids[valid]
    if ids.size and (ids.min() < 0 or ids.max() >= classes):
        raise ValueError(f"golden class ids fall outside the {classes} classes of the manifest")
    if not (np.isfinite(g.boxes[valid]).all() and np.isfinite(g.scores[valid]).all()):
        raise ValueError("golden detections hold NaN or infinity")
    return g


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
