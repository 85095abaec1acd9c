"""Preprocessing on the capture thread, for the model being served right now."""

from __future__ import annotations

import time

import numpy as np

from edge.hot_swap import ModelSlot
from edge.preprocess import Preprocessor
from edge.sensor.window_prep import WindowPreprocessor
from edge.sources.base import Frame


class AheadOfTimePreprocess:
    """Fills frame.tensor for the served model's generation; after a swap the frame loop redoes stale ones."""

    def __init__(self, slot: ModelSlot) -> None:
        self._slot = slot
        self._generation = 0
        self._pre: Preprocessor | WindowPreprocessor | None = None

    def __call__(self, frame: Frame) -> None:
        """Preprocess one frame straight into its own array (frames wait in a queue, so no buffer reuse)."""
        serving = self._slot.current
        if serving is None:
            return
        if serving.generation != self._generation or self._pre is None:
            pre = serving.preprocessor
            self._pre = pre.fresh() if isinstance(pre, WindowPreprocessor) else Preprocessor(pre.preprocess, pre.hw)
            self._generation = serving.generation
        t0 = time.perf_counter()
        frame.tensor = self._pre.preprocess_into(frame.image, np.empty(self._pre.output_shape, dtype=np.float32))
        frame.prep_s = time.perf_counter() - t0
        frame.prepared_for = self._generation
