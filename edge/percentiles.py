"""Rolling-window latency percentiles for telemetry: pure, bounded memory, no I/O.

The percentile itself is shared.percentiles.nearest_rank, the definition the cloud's latency gates use too.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence

from shared.metrics import PERCENTILES, STAGES
from shared.percentiles import percentiles


class RollingWindow:
    """The last `size` samples of one figure; older samples fall out as new ones arrive."""

    def __init__(self, size: int = 1024) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        """Record one sample; NaN and infinities are ignored so one bad timer cannot poison the window."""
        if math.isfinite(value):
            self._values.append(float(value))

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every sample."""
        self._values.clear()

    def percentiles(self, ps: Iterable[float] = PERCENTILES) -> dict[float, float]:
        """Nearest-rank percentiles of the window; empty when there are no samples yet."""
        if not self._values:
            return {}
        return percentiles(self._values, ps)


class StageWindows:
    """One rolling window per pipeline stage, reported under the metric names of shared.metrics."""

    def __init__(self, size: int = 1024, stages: Sequence[str] = STAGES) -> None:
        self._windows = {stage: RollingWindow(size) for stage in stages}

    def record(self, stage: str, ms: float) -> None:
        """Add one duration in milliseconds; unknown stages are a programming error."""
        try:
            window = self._windows[stage]
        except KeyError:
            raise ValueError(f"unknown stage {stage!r}; stages are {sorted(self._windows)}") from None
        window.add(ms)

    def values(self) -> dict[str, float]:
        """`<stage>_ms_p<N>` for every stage that has samples; stages without samples are omitted."""
        out: dict[str, float] = {}
        for stage, window in self._windows.items():
            for p, v in window.percentiles().items():
                out[f"{stage}_ms_p{p:g}"] = v
        return out
