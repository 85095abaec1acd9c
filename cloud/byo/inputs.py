"""The package's own inputs: the user's calibration images, or seeded synthetic scenes, through the shared recipe.

Images go through shared.preprocessing exactly as a device's frames do (decoded RGB, resized or letterboxed,
normalized), so golden samples and INT8 calibration see what the model will see in the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud import datasets
from cloud.datasets import IMAGE_SUFFIXES, image_files
from cloud.errors import DataError, ModelRefused
from shared.manifest import Preprocess
from shared.preprocessing import FrameGeometry, FramePreprocessor, tensor_shape

SYNTHETIC_SEED = 0


@dataclass(frozen=True)
class Inputs:
    """Preprocessed images (float32, the model's layout), where each frame landed, and what they came from."""

    arrays: np.ndarray
    geometries: list[FrameGeometry]
    source: str
    sha256: str


def decode_rgb(path: Path) -> tuple[np.ndarray, bytes]:
    """An image file as uint8 HxWx3 RGB and its bytes, as the trainer reads it; one that does not decode is
    refused, naming it."""
    try:
        return datasets.decode_rgb(path)
    except DataError as exc:
        raise ModelRefused(f"{exc}; fix or remove it") from exc


def preprocess_frames(frames: list[np.ndarray], recipe: Preprocess) -> tuple[np.ndarray, list[FrameGeometry]]:
    """RGB frames to the model input, batch first, with each frame's geometry."""
    prep = FramePreprocessor(recipe, source="rgb")
    out = np.empty(tensor_shape(recipe, len(frames)), dtype=np.float32)
    for i, frame in enumerate(frames):
        prep.preprocess_into(frame, out[i])
    return out, [prep.geometry(f.shape[:2]) for f in frames]


def calibration_inputs(root: Path, recipe: Preprocess, limit: int) -> Inputs:
    """Up to `limit` images of the directory (evenly spaced when there are more), preprocessed."""
    if not root.is_dir():
        raise ModelRefused(f"--calibration-dir {root} is not a directory")
    files = image_files(root, follow_links=False)
    if not files:
        raise ModelRefused(f"--calibration-dir {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > limit:
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    digest = hashlib.sha256()
    frames = []
    for path in files:
        rgb, data = decode_rgb(path)
        frames.append(rgb)
        digest.update(hashlib.sha256(data).digest())
    arrays, geometries = preprocess_frames(frames, recipe)
    return Inputs(arrays, geometries, f"{root} ({len(files)} images)", digest.hexdigest())


def synthetic_frames(count: int, hw: tuple[int, int], seed: int = SYNTHETIC_SEED) -> list[np.ndarray]:
    """Seeded scenes at the model's size, 4:3 where it is square: smooth noise and a few filled shapes."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = hw
    if h == w:
        h = max(8, round(w * 3 / 4))
    frames = []
    for _ in range(count):
        low = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        frame = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
        for _ in range(int(rng.integers(1, 5))):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            x1, y1 = int(rng.integers(0, w - 4)), int(rng.integers(0, h - 4))
            x2, y2 = int(rng.integers(x1 + 2, w)), int(rng.integers(y1 + 2, h))
            if rng.random() < 0.5:
                cv2.rectangle(frame, (x1, y1), (x2, y2), colour, -1)
            else:
                centre, axes = ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2)
                cv2.ellipse(frame, centre, axes, 0, 0, 360, colour, -1)
        frames.append(np.ascontiguousarray(frame))
    return frames


def synthetic_inputs(count: int, recipe: Preprocess) -> Inputs:
    """`count` seeded synthetic scenes, preprocessed."""
    h, w = recipe.resize
    arrays, geometries = preprocess_frames(synthetic_frames(count, (int(h), int(w))), recipe)
    name = f"synthetic scenes (seed {SYNTHETIC_SEED}, {count} images)"
    return Inputs(arrays, geometries, name, hashlib.sha256(name.encode()).hexdigest())
