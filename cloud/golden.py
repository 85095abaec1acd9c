"""Golden samples: which preprocessed test inputs, with the torch model's outputs, each device smoke-tests with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cloud.errors import ExportError
from shared.golden import detection_golden_arrays, golden_arrays, golden_bytes
from shared.integrity import sha256_file
from shared.manifest import Golden
from shared.object_store import atomic_write
from shared.tasks.detection import Detection


def golden_indices(logits: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` test rows covering every predicted class in turn, clearest top-1 margin first.

    Clear margins keep the device smoke test about broken models, not about borderline samples that any
    reduced precision may legitimately flip.
    """
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ExportError(f"golden samples need test logits, got shape {logits.shape}")
    top2 = np.sort(logits, axis=1)[:, -2:] if logits.shape[1] > 1 else np.concatenate([logits, logits], axis=1)
    margin = top2[:, 1] - top2[:, 0]
    predicted = logits.argmax(axis=1)
    queues = [
        [int(i) for i in sorted(np.flatnonzero(predicted == c), key=lambda i: (-margin[i], i))]
        for c in np.unique(predicted)
    ]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < min(count, logits.shape[0]):
        for queue in queues:
            if depth < len(queue) and len(chosen) < count:
                chosen.append(queue[depth])
        depth += 1
    return np.asarray(chosen, dtype=np.int64)


def write_golden(out_path: Path, inputs: np.ndarray, logits: np.ndarray) -> Golden:
    """golden.npz in the shared format (shared.golden), written atomically, and its manifest entry."""
    try:
        golden = golden_arrays(inputs, logits)
    except ValueError as exc:
        raise ExportError(f"golden samples: {exc}") from exc
    atomic_write(out_path, golden_bytes(golden))
    return Golden(
        file=out_path.name, sha256=sha256_file(out_path), bytes=out_path.stat().st_size, count=int(inputs.shape[0])
    )


def write_detection_golden(out_path: Path, inputs: np.ndarray, detections: Sequence[Sequence[Detection]]) -> Golden:
    """A detector's golden.npz: inputs and the FP32 head's detections on them (no geometry), and its manifest entry."""
    try:
        golden = detection_golden_arrays(inputs, detections)
    except ValueError as exc:
        raise ExportError(f"golden samples: {exc}") from exc
    atomic_write(out_path, golden_bytes(golden))
    return Golden(
        file=out_path.name, sha256=sha256_file(out_path), bytes=out_path.stat().st_size, count=int(inputs.shape[0])
    )
