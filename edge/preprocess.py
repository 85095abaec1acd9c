"""The device's preprocessor: shared.preprocessing's recipe on camera (BGR) frames, into a buffer reused per call."""

from __future__ import annotations

import numpy as np

from edge.errors import BackendError, SourceError
from shared.manifest import Preprocess
from shared.preprocessing import FramePreprocessor


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
        self._frames = FramePreprocessor(preprocess, source="bgr")
        self.output_shape = self._frames.output_shape
        self._out = np.empty(self.output_shape, dtype=np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """A (1, C, H, W) or (1, H, W, C) float32 batch of one, valid until the next call."""
        return self.preprocess_into(image, self._out)

    def preprocess_into(self, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill `out` (float32, output_shape) in one pass, e.g. a frame's own tensor or a runtime's input buffer."""
        try:
            return self._frames.preprocess_into(image, out)
        except ValueError as exc:
            raise SourceError(str(exc)) from exc
