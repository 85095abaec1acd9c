"""The trainer's side of the preprocessing recipe: shared.preprocessing on decoded (RGB) images, and fitting mean/std.

Splits, calibration images and golden samples go through the same shared code as every device's frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from cloud.errors import DataError
from shared import preprocessing
from shared.manifest import Preprocess

SCALE = 1.0 / 255.0
# Rounded so the manifest carries short, exactly reproducible numbers.
_STAT_DECIMALS = 4


def to_model_pixels(
    image: Image.Image | np.ndarray,
    size: tuple[int, int],
    channels: Literal["gray", "rgb"],
    resize_mode: Literal["stretch", "letterbox"] = "stretch",
    pad_value: int = 114,
) -> np.ndarray:
    """Resize to (H, W) (letterboxed if asked), then gray or RGB: uint8 HxWxC, the recipe up to normalization."""
    n = 1 if channels == "gray" else 3
    spec = Preprocess(
        resize=size, channel_order=channels, scale=SCALE, mean=[0.0] * n, std=[1.0] * n,
        resize_mode=resize_mode, pad_value=pad_value,
    )
    frame = _as_frame(image)
    try:
        return _frames(spec).model_pixels(frame)
    except ImportError as exc:
        raise DataError(str(exc)) from exc


def normalize(pixels: np.ndarray, spec: Preprocess) -> np.ndarray:
    """uint8 (N,)HxWxC model pixels -> float32 (N,)CxHxW, bit for bit what a device feeds the model."""
    try:
        return preprocessing.normalize(pixels, spec)
    except ValueError as exc:
        raise DataError(str(exc)) from exc


def preprocess_images(images: Sequence[Image.Image | np.ndarray], spec: Preprocess) -> np.ndarray:
    """Frames (HxW gray or HxWx3 RGB uint8, any size) -> float32 NCHW model input, exactly as a device computes it."""
    if spec.layout != "NCHW":
        raise DataError(f"training produces NCHW inputs, got layout {spec.layout}")
    if spec.channel_order == "bgr":
        raise DataError("training decodes RGB; use channel_order 'rgb' or 'gray'")
    frames = _frames(spec)
    out = np.empty(preprocessing.tensor_shape(spec, len(images)), dtype=np.float32)
    for i, image in enumerate(images):
        frame = _as_frame(image)
        try:
            frames.preprocess_into(frame, out[i])
        except ImportError as exc:
            raise DataError(str(exc)) from exc
    return out


def _frames(spec: Preprocess) -> preprocessing.FramePreprocessor:
    return preprocessing.FramePreprocessor(spec, source="rgb")


def _as_frame(image: Image.Image | np.ndarray) -> np.ndarray:
    """A decoded image as the uint8 HxW or HxWx3 RGB array the shared recipe takes."""
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"), dtype=np.uint8)
    return _as_hwc_or_hw(image)


def fit_preprocess(
    train_pixels: np.ndarray, size: tuple[int, int], channels: Literal["gray", "rgb"], max_samples: int = 2048
) -> Preprocess:
    """The Preprocess whose mean/std are the per-channel statistics of (evenly spaced samples of) the train split."""
    if len(train_pixels) == 0:
        raise DataError("the train split is empty; cannot compute normalization statistics")
    picks = np.unique(np.linspace(0, len(train_pixels) - 1, min(max_samples, len(train_pixels))).astype(np.int64))
    total = np.zeros(train_pixels.shape[-1])
    squares = np.zeros(train_pixels.shape[-1])
    for start in range(0, len(picks), 64):  # chunked: 224x224 RGB in float64 would need gigabytes at once
        chunk = train_pixels[picks[start : start + 64]].astype(np.float64) * SCALE
        total += chunk.sum(axis=(0, 1, 2))
        squares += np.square(chunk).sum(axis=(0, 1, 2))
    count = len(picks) * train_pixels.shape[1] * train_pixels.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return Preprocess(
        resize=size,
        channel_order=channels,
        scale=SCALE,
        mean=[round(float(m), _STAT_DECIMALS) for m in mean],
        std=[max(round(float(s), _STAT_DECIMALS), 1e-3) for s in std],
        layout="NCHW",
    )


def _as_hwc_or_hw(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise DataError(f"frames must be uint8 0-255, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        return array
    raise DataError(f"frames must be HxW, HxWx1 or HxWx3, got shape {array.shape}")
