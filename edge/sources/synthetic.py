"""A deterministic test pattern (digits 0-9, colour bars or noise) for demos and benchmarks without a camera."""

from __future__ import annotations

import threading
import time
from typing import Literal

import cv2
import numpy as np

from edge.sources.base import Frame

Pattern = Literal["digits", "bars", "noise"]

# BGR colour bars (white, yellow, cyan, green, magenta, red, blue, black), as on a test card.
_BARS = np.array(
    [[255, 255, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0], [255, 0, 255], [0, 0, 255], [255, 0, 0], [0, 0, 0]],
    dtype=np.uint8,
)


def digit_of(index: int) -> int:
    """The digit drawn on frame `index` of the 'digits' pattern."""
    return index % 10


def draw(pattern: Pattern, index: int, height: int, width: int) -> np.ndarray:
    """Frame `index` of a pattern as HxWx3 BGR uint8; a pure function of its arguments."""
    if pattern == "digits":
        return _digit(digit_of(index), height, width)
    if pattern == "bars":
        columns = (np.arange(width) * len(_BARS) // width + index) % len(_BARS)
        return np.ascontiguousarray(np.broadcast_to(_BARS[columns], (height, width, 3)))
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _digit(digit: int, height: int, width: int) -> np.ndarray:
    """A white digit centred on black, filling most of the frame like an MNIST sample."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    text = str(digit)
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, min(height, width) // 10)
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thickness)
    scale = 0.7 * min(height / th, width / tw)
    (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
    origin = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(image, text, origin, font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return image


class SyntheticSource:
    """Draws frames on demand; optional fps pacing and a frame bound."""

    live = False

    def __init__(
        self,
        pattern: Pattern = "digits",
        *,
        height: int = 64,
        width: int = 64,
        fps: float | None = None,
        frames: int | None = None,
    ) -> None:
        self.pattern = pattern
        self.height = height
        self.width = width
        self.fps = fps
        self.frames = frames
        self.name = f"synthetic:{pattern}"
        self.skipped = 0
        self._index = 0
        self._next_due: float | None = None
        self._wake = threading.Event()

    def open(self) -> None:
        """Nothing to open; pacing restarts from now."""
        self._next_due = None
        self._wake.clear()

    def read(self) -> Frame | None:
        """The next frame, paced to fps; None after `frames` frames."""
        if self.frames is not None and self._index >= self.frames:
            return None
        if self.fps is not None:
            now = time.perf_counter()
            due = now if self._next_due is None else self._next_due
            if due > now and self._wake.wait(due - now):
                return None
            # Deadlines advance by the period so pacing does not drift; a reader that fell behind gets no burst.
            self._next_due = max(due + 1.0 / self.fps, time.perf_counter())
        index = self._index
        self._index += 1
        return Frame(index, draw(self.pattern, index, self.height, self.width), time.perf_counter(), self.name)

    def interrupt(self) -> None:
        """Cut a pacing sleep short; the interrupted read returns None."""
        self._wake.set()

    def close(self) -> None:
        """Nothing is held open."""
