"""The sensor window recipe (shared.window_recipe.WindowRecipe), implemented once for the trainer and devices.

Steps: readings become float32 rows [T, C] (a device parses each cell with float(); the trainer's CSV loader does
the same); RowWindow emits rows[i*hop : i*hop + window] as a stream arrives, and ``windows_of`` cuts the same
windows from a whole recording; ``normalize_window`` turns each [T, C] window into the model's [C, T] input as
``x * a + b`` per channel in float32, where a = 1/std and b = -mean/std are computed in float64 and rounded once.
Every operation is elementwise in float32, so one stream gives the same input, bit for bit, on both sides.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from shared.window_recipe import WindowRecipe


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


def row_window(recipe: WindowRecipe) -> RowWindow:
    """The streaming windower a device runs for a model's recipe."""
    return RowWindow(recipe.window, recipe.hop)


def affine(recipe: WindowRecipe) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel float32 (a, b) with x * a + b == (x - mean) / std, folded in float64 and rounded once."""
    std = np.asarray(recipe.std, dtype=np.float64)
    mean = np.asarray(recipe.mean, dtype=np.float64)
    return (1.0 / std).astype(np.float32), (-mean / std).astype(np.float32)


def normalize_window(rows: np.ndarray, recipe: WindowRecipe) -> np.ndarray:
    """One raw [T, C] window (or [N, T, C] windows) -> the model's float32 [C, T] (or [N, C, T]) input."""
    x = np.asarray(rows, dtype=np.float32)
    c, t = recipe.num_channels, recipe.window
    if x.shape[-2:] != (t, c):
        raise ValueError(f"a window is {t} readings of {c} channels, got shape {x.shape}")
    a, b = affine(recipe)
    out = x * a
    out += b
    return np.ascontiguousarray(np.swapaxes(out, -1, -2))


def window_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Start rows of every full window of a recording, as RowWindow would emit them."""
    if length < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, length - window + 1, hop, dtype=np.int64)


def windows_of(series: np.ndarray, recipe: WindowRecipe) -> np.ndarray:
    """Every full window of one raw [T, C] recording, normalized: float32 [N, C, T] (N may be 0)."""
    x = np.asarray(series, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != recipe.num_channels:
        raise ValueError(f"a recording is [readings, {recipe.num_channels} channels], got shape {x.shape}")
    starts = window_starts(x.shape[0], recipe.window, recipe.hop)
    if starts.size == 0:
        return np.zeros((0, recipe.num_channels, recipe.window), dtype=np.float32)
    raw = np.stack([x[s : s + recipe.window] for s in starts])
    return normalize_window(raw, recipe)
