"""Best-frame snapshots: each object's highest-scoring frame, cropped with a margin and encoded as a size-capped JPEG.

The keeper holds one small crop per followed object (already scaled to max_side, never the whole frame); JPEG
encoding happens only when a snapshot is sent, lowering quality and then size until it fits max_bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.detection.config import SnapshotConfig
from edge.detection.objects import Box
from edge.detection.tracker import TrackedObject

QUALITY_STEP = 10
MIN_QUALITY = 30
SCALE_STEP = 0.75
MIN_SIDE = 8


@dataclass(frozen=True)
class Jpeg:
    """An encoded snapshot."""

    data: bytes
    width: int
    height: int
    quality: int


@dataclass
class BestFrame:
    """One object's best crop so far."""

    image: np.ndarray
    score: float
    label: str
    box: Box
    crop: tuple[int, int, int, int]
    frame_time_ms: int


def crop_region(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box grown by margin x its size on each side, rounded outwards and clamped to the frame; never empty."""
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    left = int(np.clip(np.floor(x1 - mx), 0, width - 1))
    top = int(np.clip(np.floor(y1 - my), 0, height - 1))
    right = int(np.clip(np.ceil(x2 + mx), left + 1, width))
    bottom = int(np.clip(np.ceil(y2 + my), top + 1, height))
    return left, top, right, bottom


def fit_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """The image scaled down (keeping aspect) so its longest side is at most max_side."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def encode_capped(image: np.ndarray, max_bytes: int, quality: int) -> Jpeg | None:
    """A JPEG of at most max_bytes: quality lowered step by step to MIN_QUALITY, then the size; None if hopeless."""
    img = np.ascontiguousarray(image)
    while min(img.shape[:2]) >= MIN_SIDE:
        q = quality
        while True:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok and buf.size <= max_bytes:
                return Jpeg(buf.tobytes(), img.shape[1], img.shape[0], q)
            if q <= MIN_QUALITY:
                break
            q = max(MIN_QUALITY, q - QUALITY_STEP)
        h, w = img.shape[:2]
        img = cv2.resize(img, (max(1, int(w * SCALE_STEP)), max(1, int(h * SCALE_STEP))), interpolation=cv2.INTER_AREA)
        quality = MIN_QUALITY
    return None


class SnapshotKeeper:
    """The best crop of each followed object; offered every frame, holds at most one small image per object."""

    def __init__(self, cfg: SnapshotConfig) -> None:
        self.cfg = cfg
        self._best: dict[int, BestFrame] = {}
        self._sent: dict[int, float] = {}

    def offer(self, objects: list[TrackedObject], image: np.ndarray, frame_time_ms: int) -> None:
        """Keep a crop of every object whose score beats its best so far."""
        h, w = image.shape[:2]
        for obj in objects:
            best = self._best.get(obj.track_id)
            if best is not None and obj.score <= best.score:
                continue
            crop = crop_region(obj.box, self.cfg.margin, w, h)
            piece = fit_side(image[crop[1] : crop[3], crop[0] : crop[2]], self.cfg.max_side).copy()
            self._best[obj.track_id] = BestFrame(piece, obj.score, obj.label, obj.box, crop, frame_time_ms)

    def held(self) -> set[int]:
        """Track ids with a crop."""
        return set(self._best)

    def due(self, track_id: int) -> BestFrame | None:
        """The best crop when it beats the last one sent for this object (then counted as sent), else None."""
        best = self._best.get(track_id)
        if best is None or best.score <= self._sent.get(track_id, -1.0):
            return None
        self._sent[track_id] = best.score
        return best

    def encode(self, best: BestFrame) -> Jpeg | None:
        """The crop as a JPEG within the configured cap."""
        return encode_capped(best.image, self.cfg.max_bytes, self.cfg.quality)

    def forget(self, track_id: int) -> None:
        """Drop an object given up on."""
        self._best.pop(track_id, None)
        self._sent.pop(track_id, None)
