"""Batch-size latencies measured with the runtime choice at install, and the largest batch a budget allows.

Pure: the runtime measurement (edge/runtime_bench.py) fills them in, the choice cache keeps them, and the
multi-stream scheduler (edge/streams/batch_size.py) reads them instead of timing the model again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Sizes timed at install where the chosen variant has a dynamic batch axis (issue 16 §2).
BATCH_SIZES = (1, 2, 4, 8)


def has_dynamic_batch(input_shape: Sequence[int | str]) -> bool:
    """The first axis is named or unknown, so the runtime takes any batch size (a fixed 1 cannot batch)."""
    return bool(input_shape) and not isinstance(input_shape[0], int)


def largest_batch_within(batch_ms: Mapping[int, float], budget_ms: float) -> int | None:
    """The largest measured size whose latency fits the budget; 1 when none does; None when nothing was measured."""
    if not batch_ms:
        return None
    return max((size for size, ms in batch_ms.items() if ms <= budget_ms), default=1)


def recorded_batch_ms(model: object, sizes: Sequence[int]) -> dict[int, float] | None:
    """The install-time figures for exactly these sizes when the served model carries all of them; else None."""
    known: Mapping[int, float] = getattr(model, "batch_ms", None) or {}
    if not sizes or any(size not in known for size in sizes):
        return None
    return {size: known[size] for size in sizes}
