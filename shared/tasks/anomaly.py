"""Anomaly head: per-channel reconstruction errors [B, C] to a window score, its verdict and the worst channels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.errors import TaskContractError
from shared.task_contract import AnomalyHeadSpec, DetectionThresholds
from shared.tasks.base import Geometry, HeadContext, Outputs, QualityFigures, pick_output, register_head

# How many channels a result names as the biggest contributors.
TOP_CHANNELS = 3


@dataclass(frozen=True, slots=True)
class AnomalyScore:
    """One window's score against the threshold, and channel indices (manifest.window order) by error, worst first."""

    score: float
    threshold: float
    anomalous: bool
    channels: tuple[int, ...]
    channel_errors: tuple[float, ...]


def score_window(errors: np.ndarray, spec: AnomalyHeadSpec, threshold: float | None = None) -> AnomalyScore:
    """The verdict on one window's per-channel errors; `threshold` overrides the manifest's (device config)."""
    row = np.asarray(errors, dtype=np.float64).reshape(-1)
    if row.size == 0 or not np.all(np.isfinite(row)):
        raise TaskContractError("anomaly output is empty or holds NaN or infinity")
    score = float(row.max() if spec.reduce == "max" else row.mean())
    limit = spec.threshold if threshold is None else float(threshold)
    order = np.argsort(-row, kind="stable")[:TOP_CHANNELS]
    return AnomalyScore(score, limit, score > limit, tuple(int(i) for i in order),
                        tuple(float(row[i]) for i in order))


class AnomalyHead:
    """Per-channel errors [B, C] to one AnomalyScore per window; geometry does not apply."""

    task = "anomaly"

    def __init__(self, spec: AnomalyHeadSpec, context: HeadContext) -> None:
        self.spec = spec
        self.format = spec.format
        self.context = context

    def decode(self, outputs: Outputs, geometry: Geometry = None) -> list[AnomalyScore]:
        """One AnomalyScore per window of the batch."""
        errors = pick_output(outputs, self.spec.output, self.context)
        if errors.ndim != 2:
            raise TaskContractError(f"anomaly output is per-channel errors [windows, channels], got {errors.shape}")
        return [score_window(row, self.spec) for row in errors]

    def quality(self, results: Sequence[AnomalyScore]) -> QualityFigures:
        """Mean score, and how many windows were normal or anomalous."""
        if not results:
            return QualityFigures(frames=0, mean_score=None, objects_per_frame=None)
        over = sum(r.anomalous for r in results)
        return QualityFigures(
            frames=len(results), mean_score=float(np.mean([r.score for r in results])), objects_per_frame=None,
            class_counts={"anomaly": over, "normal": len(results) - over},
        )


def _factory(spec: AnomalyHeadSpec, context: HeadContext, _: DetectionThresholds | None) -> AnomalyHead:
    return AnomalyHead(spec, context)


register_head("anomaly", "reconstruction_error")(_factory)
