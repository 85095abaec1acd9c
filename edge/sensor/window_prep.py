"""A sensor model's preprocessor: a raw [T, C] window to the model's float32 [1, C, T] batch (shared.windowing).

Same interface as edge.preprocess.Preprocessor, so the frame loop, the capture thread and the warm-up treat image
and sensor models alike; the arithmetic is shared.windowing.normalize_window, bit-identical with the trainer.
"""

from __future__ import annotations

import numpy as np

from edge.errors import SourceError
from shared.window_recipe import WindowRecipe
from shared.windowing import normalize_window


class WindowPreprocessor:
    """One instance per served model; call it from one thread: the returned array is reused by the next call."""

    def __init__(self, recipe: WindowRecipe) -> None:
        self.recipe = recipe
        self.output_shape = (1, recipe.num_channels, recipe.window)
        self._out = np.empty(self.output_shape, dtype=np.float32)

    def fresh(self) -> WindowPreprocessor:
        """Another instance for another thread (the capture thread's ahead-of-time preprocessing)."""
        return WindowPreprocessor(self.recipe)

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """A (1, C, T) float32 batch of one, valid until the next call."""
        return self.preprocess_into(window, self._out)

    def preprocess_into(self, window: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill `out` (float32, output_shape); SourceError when the window is not the recipe's [T, C]."""
        try:
            out[0] = normalize_window(window, self.recipe)
        except ValueError as exc:
            raise SourceError(f"a sensor window does not fit the model's recipe: {exc}") from exc
        return out
