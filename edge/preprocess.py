"""Frame to model input exactly as the manifest says: resize, colour order, invert, scale, mean/std, layout."""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import BackendError, SourceError
from shared.manifest import Preprocess

# (input channels, target order) -> OpenCV conversion; None means the channels are already right.
_CONVERSIONS: dict[tuple[int, str], int | None] = {
    (1, "gray"): None,
    (1, "rgb"): cv2.COLOR_GRAY2RGB,
    (1, "bgr"): cv2.COLOR_GRAY2BGR,
    (3, "gray"): cv2.COLOR_BGR2GRAY,
    (3, "rgb"): cv2.COLOR_BGR2RGB,
    (3, "bgr"): None,
    (4, "gray"): cv2.COLOR_BGRA2GRAY,
    (4, "rgb"): cv2.COLOR_BGRA2RGB,
    (4, "bgr"): cv2.COLOR_BGRA2BGR,
}


def interpolation_for(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """INTER_AREA when shrinking (no aliasing), INTER_LINEAR when any side grows."""
    return cv2.INTER_AREA if dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1] else cv2.INTER_LINEAR


def affine_constants(p: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (a, b) with ((invert ? 255 - x : x) * scale - mean) / std == a * x + b."""
    scale = np.float64(p.scale)
    mean = np.asarray(p.mean, dtype=np.float64)
    std = np.asarray(p.std, dtype=np.float64)
    if p.invert:
        return (-scale / std).astype(np.float32), ((255.0 * scale - mean) / std).astype(np.float32)
    return (scale / std).astype(np.float32), (-mean / std).astype(np.float32)


class Preprocessor:
    """One instance per served model; call it from one thread: the returned array is reused by the next call."""

    def __init__(self, preprocess: Preprocess, input_hw: tuple[int, int] | None = None) -> None:
        hw = (int(preprocess.resize[0]), int(preprocess.resize[1]))
        if input_hw is not None and tuple(input_hw) != hw:
            raise BackendError(
                f"the model takes {input_hw[0]}x{input_hw[1]} inputs but the manifest resizes frames to "
                f"{hw[0]}x{hw[1]}; the package is inconsistent"
            )
        self.preprocess = preprocess
        self.hw = hw
        self.channels = preprocess.channels
        self.order = preprocess.channel_order
        self.nchw = preprocess.layout == "NCHW"
        a, b = affine_constants(preprocess)
        shape = (self.channels, 1, 1) if self.nchw else (self.channels,)
        self._a = a.reshape(shape)
        self._b = b.reshape(shape)
        self.output_shape = (1, self.channels, *hw) if self.nchw else (1, *hw, self.channels)
        self._out = np.empty(self.output_shape, dtype=np.float32)
        self._resized: np.ndarray | None = None
        self._converted: np.ndarray | None = None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """A (1, C, H, W) or (1, H, W, C) float32 batch of one, valid until the next call."""
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        in_channels = 1 if image.ndim == 2 else image.shape[2]
        if image.ndim not in (2, 3) or (in_channels, self.order) not in _CONVERSIONS:
            raise SourceError(f"frame of shape {image.shape} is not HxW, HxWx1, HxWx3 (BGR) or HxWx4 (BGRA)")
        src_hw = (image.shape[0], image.shape[1])
        if src_hw != self.hw:
            interp = interpolation_for(src_hw, self.hw)
            self._resized = cv2.resize(image, (self.hw[1], self.hw[0]), dst=self._resized, interpolation=interp)
            image = self._resized
        code = _CONVERSIONS[(in_channels, self.order)]
        if code is not None:
            self._converted = cv2.cvtColor(image, code, dst=self._converted)
            image = self._converted
        if image.ndim == 2:
            image = image[np.newaxis] if self.nchw else image[:, :, np.newaxis]
        elif self.nchw:
            image = image.transpose(2, 0, 1)
        out = self._out
        np.multiply(image, self._a, out=out[0])
        out += self._b
        return out
