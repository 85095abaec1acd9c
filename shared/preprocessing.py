"""The manifest's preprocessing recipe (shared.manifest.Preprocess), implemented once for the trainer and devices.

Steps, in this order: resize the frame (OpenCV INTER_AREA when both sides shrink, else INTER_LINEAR), either
stretched to the model size or, with ``resize_mode: letterbox``, keeping its aspect ratio (Ultralytics' rounding);
convert colour (ITU-R 601 luma through OpenCV for gray, a channel reorder for rgb/bgr); a letterboxed frame is then
centred on a canvas of ``pad_value``; then ``x * a + b`` per channel in float32, where a and b fold invert, scale,
mean and std together (computed in float64, rounded once). FrameGeometry records where the frame landed, so boxes
in model-input pixels map back to the frame (boxes_to_frame) and labels map forward (boxes_to_input).
The trainer's splits and golden samples and every device's frames go through this module, so one image gives
the same float32 tensor, bit for bit, on both sides. OpenCV is imported only when a frame needs a resize or a
gray conversion, so the module itself needs numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class FrameGeometry:
    """Where a frame lies in the model input: input = frame * scale + pad, per axis, in pixels."""

    frame_hw: tuple[int, int]
    input_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    pad_top: int
    pad_left: int

    @property
    def scale_y(self) -> float:
        """Model-input pixels per frame pixel, vertically."""
        return self.resized_hw[0] / self.frame_hw[0]

    @property
    def scale_x(self) -> float:
        """Model-input pixels per frame pixel, horizontally."""
        return self.resized_hw[1] / self.frame_hw[1]


def stretch_geometry(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> FrameGeometry:
    """The whole input is the frame, each axis scaled on its own."""
    return FrameGeometry(_hw(frame_hw), _hw(input_hw), _hw(input_hw), 0, 0)


def letterbox_geometry(frame_hw: tuple[int, int], input_hw: tuple[int, int]) -> FrameGeometry:
    """Aspect kept, centred, with Ultralytics' rounding (odd padding: the extra pixel goes bottom/right)."""
    (h, w), (th, tw) = _hw(frame_hw), _hw(input_hw)
    r = min(th / h, tw / w)
    rh, rw = min(th, max(1, round(h * r))), min(tw, max(1, round(w * r)))
    top, left = round((th - rh) / 2 - 0.1), round((tw - rw) / 2 - 0.1)
    return FrameGeometry((h, w), (th, tw), (rh, rw), top, left)


def frame_geometry(recipe: Preprocess, frame_hw: tuple[int, int]) -> FrameGeometry:
    """The geometry the recipe gives a frame of this size."""
    if recipe.resize_mode == "letterbox":
        return letterbox_geometry(frame_hw, recipe.resize)
    return stretch_geometry(frame_hw, recipe.resize)


def boxes_to_frame(boxes: np.ndarray, geometry: FrameGeometry, clip: bool = True) -> np.ndarray:
    """xyxy boxes [..., 4] in model-input pixels -> frame pixels (letterbox undone), clipped to the frame."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes are [..., 4] xyxy, got shape {b.shape}")
    out = np.empty_like(b)
    out[..., 0::2] = (b[..., 0::2] - geometry.pad_left) / geometry.scale_x
    out[..., 1::2] = (b[..., 1::2] - geometry.pad_top) / geometry.scale_y
    if clip:
        np.clip(out[..., 0::2], 0.0, geometry.frame_hw[1], out=out[..., 0::2])
        np.clip(out[..., 1::2], 0.0, geometry.frame_hw[0], out=out[..., 1::2])
    return out


def boxes_to_input(boxes: np.ndarray, geometry: FrameGeometry) -> np.ndarray:
    """xyxy boxes [..., 4] in frame pixels -> model-input pixels (where the trainer's labels land)."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"boxes are [..., 4] xyxy, got shape {b.shape}")
    out = np.empty_like(b)
    out[..., 0::2] = b[..., 0::2] * geometry.scale_x + geometry.pad_left
    out[..., 1::2] = b[..., 1::2] * geometry.scale_y + geometry.pad_top
    return out


def _hw(hw: tuple[int, int]) -> tuple[int, int]:
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"sizes must be at least 1x1, got {h}x{w}")
    return h, w


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
        self.letterbox = recipe.resize_mode == "letterbox"
        self._resized: np.ndarray | None = None
        self._gray: np.ndarray | None = None
        self._canvas: np.ndarray | None = None

    def geometry(self, frame_hw: tuple[int, int]) -> FrameGeometry:
        """Where a frame of this size lands in the model input (for mapping boxes back)."""
        return frame_geometry(self.recipe, frame_hw)

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
        geometry = self.geometry(image.shape[:2]) if self.letterbox else None
        size = geometry.resized_hw if geometry is not None else self.hw
        if image.shape[:2] != size:
            cv2 = _cv2()
            flag = cv2.INTER_AREA if interpolation_for(image.shape[:2], size) == "area" else cv2.INTER_LINEAR
            src = np.ascontiguousarray(image)
            resized = self._resized if self._resized is not None and self._resized.shape[:2] == size else None
            self._resized = cv2.resize(src, (size[1], size[0]), dst=resized, interpolation=flag)
            image = self._resized
        if image.ndim == 3 and self.channels == 1:
            gray = self._gray if self._gray is not None and self._gray.shape[:2] == size else None
            self._gray = _cv2().cvtColor(np.ascontiguousarray(image), self._gray_code(image.shape[2]), dst=gray)
            image = self._gray
        if geometry is not None and size != self.hw:
            image = self._on_canvas(image, geometry)
        if image.ndim == 2:  # one plane: broadcast over the model's channels by the arithmetic
            return image[np.newaxis] if self.nchw else image[:, :, np.newaxis]
        planes = image[:, :, 0:3] if self.source == self.recipe.channel_order else image[:, :, 2::-1]
        return planes.transpose(2, 0, 1) if self.nchw else planes

    def _on_canvas(self, image: np.ndarray, g: FrameGeometry) -> np.ndarray:
        """The resized frame centred on a model-sized canvas of the recipe's pad value."""
        shape = (*self.hw, *image.shape[2:])
        if self._canvas is None or self._canvas.shape != shape or self._canvas.dtype != image.dtype:
            self._canvas = np.empty(shape, dtype=image.dtype)
        self._canvas.fill(self.recipe.pad_value)
        self._canvas[g.pad_top : g.pad_top + g.resized_hw[0], g.pad_left : g.pad_left + g.resized_hw[1]] = image
        return self._canvas

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
