"""What the detection parts need from one detection, so they work with any task head's result type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# (x1, y1, x2, y2) in frame pixels, x1 <= x2 and y1 <= y2.
Box = tuple[float, float, float, float]


class DetectionLike(Protocol):
    """One detected object as a task head reports it: label, class id, score and a box in frame pixels."""

    @property
    def label(self) -> str: ...

    @property
    def class_id(self) -> int: ...

    @property
    def score(self) -> float: ...

    @property
    def box(self) -> Box: ...


@dataclass(frozen=True, slots=True)
class Det:
    """A plain detection, for callers and tests that have no task head result at hand."""

    label: str
    class_id: int
    score: float
    box: Box
