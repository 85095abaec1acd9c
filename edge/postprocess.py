"""Logits to what a user sees: a stable softmax, the top label with its score, and the top-k."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.errors import BackendError


@dataclass(frozen=True, slots=True)
class Prediction:
    """One frame's classification."""

    index: int
    label: str
    score: float
    top_k: tuple[tuple[str, float], ...]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the max so large logits cannot overflow."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def postprocess(logits: np.ndarray, labels: Sequence[str], k: int = 3) -> Prediction:
    """The prediction for a batch of one; BackendError when the output does not match the labels."""
    row = np.asarray(logits).reshape(-1)
    if row.size != len(labels):
        raise BackendError(f"model output has {row.size} values but the manifest lists {len(labels)} labels")
    if not np.all(np.isfinite(row)):
        raise BackendError("model output holds NaN or infinity")
    probs = softmax(row)
    k = max(1, min(k, row.size))
    # A stable sort breaks ties towards the lower class index, exactly like argmax.
    top = np.argsort(-probs, kind="stable")[:k]
    best = int(top[0])
    return Prediction(
        index=best,
        label=labels[best],
        score=float(probs[best]),
        top_k=tuple((labels[int(i)], float(probs[i])) for i in top),
    )
