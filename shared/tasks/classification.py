"""Classification head: logits (or probabilities) to the top label, its score and the top-k, as users read them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.errors import TaskContractError
from shared.task_contract import ClassificationHeadSpec, DetectionThresholds
from shared.tasks.base import Geometry, HeadContext, Outputs, QualityFigures, pick_output, register_head


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


def classify(scores: np.ndarray, labels: Sequence[str], k: int = 3, *, probabilities: bool = False) -> Prediction:
    """The prediction for a batch of one (softmax unless already probabilities); TaskContractError if unfit."""
    row = np.asarray(scores).reshape(-1)
    if row.size != len(labels):
        raise TaskContractError(f"model output has {row.size} values but the manifest lists {len(labels)} labels")
    if not np.all(np.isfinite(row)):
        raise TaskContractError("model output holds NaN or infinity")
    probs = row.astype(np.float64) if probabilities else softmax(row)
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


def classification_quality(results: Sequence[Prediction]) -> QualityFigures:
    """Mean top-1 score and the top-1 class mix over a window of predictions."""
    if not results:
        return QualityFigures(frames=0, mean_score=None, objects_per_frame=None)
    counts = Counter(p.label for p in results)
    return QualityFigures(
        frames=len(results),
        mean_score=float(np.mean([p.score for p in results])),
        objects_per_frame=None,
        class_counts=dict(sorted(counts.items())),
    )


class ClassificationHead:
    """Logits [B, classes] (or probabilities) to one Prediction per image; geometry does not apply."""

    task = "classification"

    def __init__(self, spec: ClassificationHeadSpec, context: HeadContext) -> None:
        self.spec = spec
        self.format = spec.format
        self.context = context

    def decode(self, outputs: Outputs, geometry: Geometry = None) -> list[Prediction]:
        """One Prediction per image of the batch."""
        scores = pick_output(outputs, self.spec.output, self.context)
        n = len(self.context.labels)
        rows = scores.reshape(1, -1) if scores.size == n else scores.reshape(scores.shape[0] if scores.ndim else 1, -1)
        probabilities = self.spec.format == "probabilities"
        return [classify(r, self.context.labels, self.spec.top_k, probabilities=probabilities) for r in rows]

    def quality(self, results: Sequence[Prediction]) -> QualityFigures:
        """Mean top-1 score and class mix."""
        return classification_quality(results)


def _factory(spec: ClassificationHeadSpec, context: HeadContext, _: DetectionThresholds | None) -> ClassificationHead:
    return ClassificationHead(spec, context)


register_head("classification", "logits")(_factory)
register_head("classification", "probabilities")(_factory)
