"""Sliding windows over numeric sensor rows: `window` rows per frame, a new frame every `stride` rows."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np


class RowWindow:
    """Collects rows of equal width and hands out (window, columns) float32 arrays."""

    def __init__(self, window: int, stride: int) -> None:
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got window={window} stride={stride}")
        self.window = window
        self.stride = stride
        self.columns: int | None = None
        self._rows: deque[np.ndarray] = deque(maxlen=window)
        self._since_emit = 0
        self._emitted = False

    def push(self, values: Sequence[float] | np.ndarray) -> np.ndarray | None:
        """Add one row; return a window when one is due. ValueError on a row that cannot belong to the series."""
        row = np.asarray(values, dtype=np.float32)
        if row.ndim != 1 or row.size == 0:
            raise ValueError(f"a sensor row must be a flat list of numbers, got shape {row.shape}")
        if not np.all(np.isfinite(row)):
            raise ValueError("a sensor row holds NaN or infinity")
        if self.columns is None:
            self.columns = row.size
        elif row.size != self.columns:
            raise ValueError(f"a sensor row has {row.size} values, earlier rows had {self.columns}")
        self._rows.append(row)
        self._since_emit += 1
        if len(self._rows) < self.window or (self._emitted and self._since_emit < self.stride):
            return None
        self._emitted = True
        self._since_emit = 0
        return np.stack(self._rows)
