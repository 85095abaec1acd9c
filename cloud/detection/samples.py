"""Detection samples at model-input size: uint8 images with xyxy boxes in model-input pixels and class ids."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionSplit:
    """One split: images uint8 [N,H,W,3] RGB, per-image boxes float32 [n,4] xyxy and class ids int64 [n]."""

    images: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: np.ndarray) -> DetectionSplit:
        """The samples at idx, in that order."""
        return DetectionSplit(self.images[idx], [self.boxes[i] for i in idx], [self.classes[i] for i in idx])
