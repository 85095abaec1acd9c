"""Synthetic detection streams with known ground truth: objects moving on straight lines, occlusions, duplicates."""

from __future__ import annotations

from dataclasses import dataclass

from edge.detection.objects import Box
from shared.tasks.detection import Detection


@dataclass(frozen=True)
class Walker:
    """An object moving at constant velocity: its box in frame f, and the frames it is hidden in."""

    name: str
    label: str
    start: tuple[float, float]
    velocity: tuple[float, float]
    size: tuple[float, float] = (40.0, 80.0)
    score: float = 0.9
    hidden: frozenset[int] = frozenset()
    class_id: int = 0

    def box(self, frame: int) -> Box:
        x = self.start[0] + self.velocity[0] * frame
        y = self.start[1] + self.velocity[1] * frame
        return (x, y, x + self.size[0], y + self.size[1])

    def det(self, frame: int, score: float | None = None) -> Detection:
        return Detection(self.label, self.class_id, self.score if score is None else score, self.box(frame))
