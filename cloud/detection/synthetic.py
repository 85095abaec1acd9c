"""The synthetic detection data set: seeded train/val/test splits of generated scenes, digests for its identity."""

from __future__ import annotations

import hashlib

import numpy as np

from cloud.detection.samples import DetectionSplit
from cloud.detection.scenes import SceneSpec, make_scene, split_seed

SYNTHETIC_NAME = "synthetic-scenes"


def generate_split(split: str, count: int, seed: int, spec: SceneSpec) -> DetectionSplit:
    """`count` scenes of a split; scene i of a split depends only on (seed, split, i)."""
    h, w = spec.size
    images = np.empty((count, h, w, 3), dtype=np.uint8)
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    for i in range(count):
        scene = make_scene(split_seed(seed, split, i), spec, "test" if split == "test" else "train")
        images[i] = scene.image
        boxes.append(scene.boxes)
        classes.append(scene.classes)
    return DetectionSplit(images, boxes, classes)


def split_digest(classes: list[str], splits: list[DetectionSplit]) -> str:
    """sha256 over class names, pixels, boxes and class ids of every split, in order."""
    h = hashlib.sha256("\n".join(classes).encode() + b"\0")
    for split in splits:
        for i in range(len(split)):
            h.update(split.images[i].tobytes())
            h.update(np.ascontiguousarray(split.boxes[i], np.float32).tobytes())
            h.update(np.ascontiguousarray(split.classes[i], np.int64).tobytes())
    return h.hexdigest()
