"""Recordings as the sensor trainer holds them: raw float32 readings [T, C] with their class and channel names."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shared.window_recipe import SensorChannel


@dataclass(frozen=True)
class Recording:
    """One recording in raw units; `labels` holds one class per reading (None: unlabelled, e.g. anomaly data)."""

    name: str
    values: np.ndarray
    labels: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Readings in the recording."""
        return int(self.values.shape[0])


@dataclass(frozen=True)
class SensorDataset:
    """Every recording of a data set, the held-out test split if the set defines one, and the stream's shape."""

    name: str
    channels: list[SensorChannel]
    sample_rate_hz: float
    recordings: list[Recording]
    test: list[Recording] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Sorted class names seen in any recording."""
        seen: set[str] = set()
        for r in [*self.recordings, *self.test]:
            if r.labels is not None:
                seen.update(str(v) for v in np.unique(r.labels))
        return sorted(seen)
