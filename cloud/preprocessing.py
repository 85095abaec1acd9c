"""The device's preprocessing recipe (shared.manifest.Preprocess), implemented once for every split and calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from cloud.errors import DataError
from shared.manifest import Preprocess

SCALE = 1.0 / 255.0
# Rounded so the manifest carries short, exactly reproducible numbers.
_STAT_DECIMALS = 4


def to_model_pixels(
    image: Image.Image | np.ndarray, size: tuple[int, int], channels: Literal["gray", "rgb"]
) -> np.ndarray:
    """Resize to (H, W), then convert to gray or RGB: uint8 HxWxC, the first half of Preprocess.

    Shrinking on both axes averages areas (PIL BOX, like cv2.INTER_AREA); otherwise bilinear (cv2.INTER_LINEAR).
    Gray uses ITU-R 601 luma weights, as PIL's and OpenCV's RGB-to-gray conversions do.
    """
    img = image if isinstance(image, Image.Image) else Image.fromarray(_as_hwc_or_hw(image))
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    height, width = size
    if img.size != (width, height):
        shrinking = width <= img.size[0] and height <= img.size[1]
        img = img.resize((width, height), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    if channels == "gray":
        out = np.asarray(img.convert("L"), dtype=np.uint8)[:, :, None]
    else:
        out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out)


def normalize(pixels: np.ndarray, spec: Preprocess) -> np.ndarray:
    """uint8 (N,)HxWxC model pixels -> float32 (N,)CxHxW: invert, * scale, (x - mean) / std; the second half."""
    x = pixels.astype(np.float32)
    if spec.invert:
        x = 255.0 - x
    x *= np.float32(spec.scale)
    x -= np.asarray(spec.mean, dtype=np.float32)
    x /= np.asarray(spec.std, dtype=np.float32)
    axes = (0, 3, 1, 2) if x.ndim == 4 else (2, 0, 1)
    return np.ascontiguousarray(x.transpose(axes))


def preprocess_images(images: Sequence[Image.Image | np.ndarray], spec: Preprocess) -> np.ndarray:
    """Frames (HxW gray or HxWx3 RGB uint8, any size) -> float32 NCHW model input, exactly as a device computes it."""
    if spec.layout != "NCHW":
        raise DataError(f"training produces NCHW inputs, got layout {spec.layout}")
    if spec.channel_order == "bgr":
        raise DataError("training decodes RGB; use channel_order 'rgb' or 'gray'")
    channels: Literal["gray", "rgb"] = spec.channel_order
    pixels = np.stack([to_model_pixels(img, spec.resize, channels) for img in images])
    return normalize(pixels, spec)


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
