"""Which detections count at all: tracked labels, per-label area filters and masks (Frigate's object filters)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from edge.detection.config import MAX_COORD, DetectionConfig
from edge.detection.geometry import area, bottom_centre, point_in_polygon
from edge.detection.objects import DetectionLike

D = TypeVar("D", bound=DetectionLike)


def well_formed(det: DetectionLike) -> bool:
    """A finite score and a finite, ordered box within the frame coordinates a payload can carry."""
    x1, y1, x2, y2 = det.box
    return (
        math.isfinite(det.score)
        and all(math.isfinite(v) and -MAX_COORD <= v <= MAX_COORD for v in det.box)
        and x1 <= x2
        and y1 <= y2
    )


class ObjectFilters:
    """Drops detections of untracked labels, outside a label's area range, or standing in a mask."""

    def __init__(self, cfg: DetectionConfig) -> None:
        self.cfg = cfg
        self._labels = frozenset(cfg.objects)

    def admit(self, det: DetectionLike) -> bool:
        """Whether the tracker should see this detection (scores are the tracker's and the reporter's business)."""
        if not well_formed(det):
            return False
        if self._labels and det.label not in self._labels:
            return False
        f = self.cfg.filter_for(det.label)
        if not f.min_area <= area(det.box) <= f.max_area:
            return False
        foot = bottom_centre(det.box)
        masks = (*self.cfg.masks, *f.mask)
        return not any(point_in_polygon(foot, m) for m in masks)

    def apply(self, detections: Sequence[D]) -> list[D]:
        """The admitted detections, in order."""
        return [d for d in detections if self.admit(d)]

    def reportable(self, label: str, top_score: float) -> bool:
        """Whether an object has been seen confidently enough to report (its label's min_score)."""
        return top_score >= self.cfg.filter_for(label).min_score
