"""The manifest's preprocessing recipe (shared.manifest.Preprocess), implemented once for the trainer and devices.

Steps, in this order: resize the frame as it is (OpenCV INTER_AREA when both sides shrink, else INTER_LINEAR);
convert colour (ITU-R 601 luma through OpenCV for gray, a channel reorder for rgb/bgr); then ``x * a + b`` per
channel in float32, where a and b fold invert, scale, mean and std together (computed in float64, rounded once).
The trainer's splits and golden samples and every device's frames go through this module, so one image gives
the same float32 tensor, bit for bit, on both sides. OpenCV is imported only when a frame needs a resize or a
gray conversion, so the module itself needs numpy alone.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal

import numpy as np

from shared.manifest import Preprocess

# Channel order of 3- and 4-channel frames: cameras (OpenCV) deliver BGR(A), image decoders (PIL) RGB(A).
SourceOrder = Literal["bgr", "rgb"]
Interpolation = Literal["area", "linear"]

_FRAME_SHAPES = "HxW, HxWx1, HxWx3 or HxWx4"


def interpolation_for(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> Interpolation:
    """Area averaging when both sides shrink (no aliasing), bilinear when any side grows."""
    return "area" if dst_hw[0] <= src_hw[0] and dst_hw[1] <= src_hw[1] else "linear"


def affine_constants(p: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 (a, b) with ((invert ? 255 - x : x) * scale - mean) / std == a * x + b."""
    scale = np.float64(p.scale)
    mean = np.asarray(p.mean, dtype=np.float64)
    std = np.asarray(p.std, dtype=np.float64)
    if p.invert:
        return (-scale / std).astype(np.float32), ((255.0 * scale - mean) / std).astype(np.float32)
    return (scale / std).astype(np.float32), (-mean / std).astype(np.float32)


def tensor_shape(p: Preprocess, batch: int = 1) -> tuple[int, int, int, int]:
    """The model-input shape of `batch` preprocessed frames: (N, C, H, W) or (N, H, W, C)."""
    h, w = p.resize
    return (batch, p.channels, h, w) if p.layout == "NCHW" else (batch, h, w, p.channels)


def _cv2() -> ModuleType:
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "resizing frames or converting them to gray needs OpenCV: pip install opencv-python-headless "
            "(part of the edge and cloud extras)"
        ) from exc
    return cv2


class FramePreprocessor:
    """Frames to model input for one recipe; it reuses its scratch buffers, so give each thread its own."""

    def __init__(self, recipe: Preprocess, source: SourceOrder = "bgr") -> None:
        self.recipe = recipe
        self.source = source
        self.hw = (int(recipe.resize[0]), int(recipe.resize[1]))
        self.channels = recipe.channels
        self.nchw = recipe.layout == "NCHW"
        self.output_shape = tensor_shape(recipe)
        a, b = affine_constants(recipe)
        shape = (self.channels, 1, 1) if self.nchw else (self.channels,)
        self._a = a.reshape(shape)
        self._b = b.reshape(shape)
        self._resized: np.ndarray | None = None
        self._gray: np.ndarray | None = None

    def preprocess_into(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the model input of one frame into `out` (float32, output_shape or without its batch axis)."""
        if out.dtype != np.float32 or out.shape not in (self.output_shape, self.output_shape[1:]):
            raise TypeError(f"output buffer is {out.dtype}{out.shape}, expected float32{self.output_shape}")
        dst = out[0] if out.ndim == 4 else out
        np.multiply(self._channels_view(frame), self._a, out=dst)
        dst += self._b
        return out

    def model_pixels(self, frame: np.ndarray) -> np.ndarray:
        """A new HxWxC array of the frame at model size in the model's channel order, before normalization."""
        view = self._channels_view(frame)
        if self.nchw:
            view = view.transpose(1, 2, 0)
        return np.ascontiguousarray(np.broadcast_to(view, (*self.hw, self.channels)))

    def _channels_view(self, frame: np.ndarray) -> np.ndarray:
        """The resized, colour-converted frame as a (C|1, H, W) or (H, W, C|1) view, without a copy where possible."""
        image = self._checked(frame)
        if image.shape[:2] != self.hw:
            cv2 = _cv2()
            flag = cv2.INTER_AREA if interpolation_for(image.shape[:2], self.hw) == "area" else cv2.INTER_LINEAR
            src = np.ascontiguousarray(image)
            self._resized = cv2.resize(src, (self.hw[1], self.hw[0]), dst=self._resized, interpolation=flag)
            image = self._resized
        if image.ndim == 3 and self.channels == 1:
            self._gray = _cv2().cvtColor(np.ascontiguousarray(image), self._gray_code(image.shape[2]), dst=self._gray)
            image = self._gray
        if image.ndim == 2:  # one plane: broadcast over the model's channels by the arithmetic
            return image[np.newaxis] if self.nchw else image[:, :, np.newaxis]
        planes = image[:, :, 0:3] if self.source == self.recipe.channel_order else image[:, :, 2::-1]
        return planes.transpose(2, 0, 1) if self.nchw else planes

    def _checked(self, frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype.kind not in "uif" or frame.size == 0:
            kind = getattr(frame, "dtype", type(frame).__name__)
            raise ValueError(f"frames must be non-empty numeric arrays ({_FRAME_SHAPES}), got {kind}")
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]
        if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
            raise ValueError(f"frame of shape {frame.shape} is not {_FRAME_SHAPES}")
        return frame

    def _gray_code(self, channels: int) -> Any:
        cv2 = _cv2()
        codes = {
            ("bgr", 3): cv2.COLOR_BGR2GRAY,
            ("bgr", 4): cv2.COLOR_BGRA2GRAY,
            ("rgb", 3): cv2.COLOR_RGB2GRAY,
            ("rgb", 4): cv2.COLOR_RGBA2GRAY,
        }
        return codes[(self.source, channels)]


def normalize(pixels: np.ndarray, recipe: Preprocess) -> np.ndarray:
    """(N,)HxWxC model pixels (FramePreprocessor.model_pixels) -> float32 (N,)CxHxW or (N,)HxWxC, the last step."""
    if pixels.ndim not in (3, 4) or pixels.shape[-1] != recipe.channels:
        raise ValueError(f"model pixels are {pixels.shape}, expected (N,)HxWx{recipe.channels}")
    a, b = affine_constants(recipe)
    x = pixels.transpose((0, 3, 1, 2) if pixels.ndim == 4 else (2, 0, 1)) if recipe.layout == "NCHW" else pixels
    shape = (recipe.channels, 1, 1) if recipe.layout == "NCHW" else (recipe.channels,)
    out = np.empty(x.shape, dtype=np.float32)
    np.multiply(x, a.reshape(shape), out=out)
    out += b.reshape(shape)
    return out
