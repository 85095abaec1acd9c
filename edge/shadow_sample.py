"""The shadow check's share of the frame path, one copy for the single-source pipeline and the multi-stream loop:
which frames keep a copy of their model input, and how a kept frame's result reaches the check before its sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # edge.pipeline calls keep_input
    from edge.pipeline import FrameResult


def keep_input(sample: Callable[[int], bool] | None, index: int, tensor: np.ndarray) -> np.ndarray | None:
    """A copy of the frame's model input where the shadow check samples this frame (the runtime reuses its
    buffers); None on every other frame."""
    return tensor.copy() if sample is not None and sample(index) else None


def deliver(
    result: FrameResult,
    on_result: Callable[[FrameResult], None],
    on_sample: Callable[[FrameResult], None] | None,
) -> None:
    """A sampled result goes to the shadow check first, then every result to its sink."""
    if result.tensor is not None and on_sample is not None:
        on_sample(result)
    on_result(result)
