"""Detection quality per telemetry window, the rollout gates' raw material in detection terms.

Like edge.quality.QualityWindow: the results thread adds each frame's detections under a short lock, the telemetry
thread closes the window at report time, so each report covers exactly the frames since the previous one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from edge.detection.objects import DetectionLike

# Telemetry keys (to be declared in shared/metrics.py beside results_window and conf_mean).
FRAMES_WINDOW = "det_frames_window"
SCORE_MEAN = "det_score_mean"
OBJECTS_PER_FRAME = "det_objects_per_frame"


class DetectionQualityWindow:
    """Frames, mean detection score, objects per frame and the class mix since the last report."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames = 0
        self._objects = 0
        self._score_sum = 0.0
        self._counts: dict[str, int] = {}
        self._reported: dict[str, int] = {}

    def add(self, detections: Sequence[DetectionLike]) -> None:
        """Count one frame's detections, none included (results thread); non-finite scores are not counted."""
        detections = [d for d in detections if math.isfinite(d.score)]
        total = sum(float(d.score) for d in detections)
        with self._lock:
            self._frames += 1
            self._objects += len(detections)
            self._score_sum += total
            for d in detections:
                self._counts[d.label] = self._counts.get(d.label, 0) + 1

    def metrics(self) -> dict[str, float]:
        """Close the window: its figures now; its class mix from class_counts() until the next close."""
        with self._lock:
            frames, objects, total, counts = self._frames, self._objects, self._score_sum, self._counts
            self._frames, self._objects, self._score_sum, self._counts = 0, 0, 0.0, {}
            self._reported = counts
        out = {FRAMES_WINDOW: float(frames)}
        if frames:
            out[OBJECTS_PER_FRAME] = objects / frames
        if objects:
            out[SCORE_MEAN] = total / objects
        return out

    def class_counts(self) -> dict[str, int]:
        """Label -> detections in the window metrics() closed last."""
        with self._lock:
            return dict(self._reported)
