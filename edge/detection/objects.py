"""What the detection parts need from one detection: shared.tasks.detection.Detection fits, as would any other."""

from __future__ import annotations

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

