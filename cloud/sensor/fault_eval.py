"""The anomaly test set: clean held-out windows, plus windows of faulty copies that overlap an injected fault."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloud.sensor.faults import FaultKind, faulty_copies
from cloud.sensor.recordings import Recording
from shared.window_recipe import WindowRecipe
from shared.windowing import window_starts, windows_of


@dataclass(frozen=True)
class AnomalyEval:
    """Normalized windows [N, C, T], whether each holds a fault, and its fault kind ('' for clean windows)."""

    inputs: np.ndarray
    is_anomaly: np.ndarray
    kind: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        """Clean windows only."""
        return self.inputs[~self.is_anomaly]


def anomaly_eval_set(
    test: list[Recording], recipe: WindowRecipe, kinds: list[FaultKind], seed: int
) -> AnomalyEval:
    """Every window of every clean test recording (normal) and each faulty copy's windows touching its fault."""
    clean = [windows_of(r.values, recipe) for r in test]
    inputs: list[np.ndarray] = list(clean)
    flags: list[np.ndarray] = [np.zeros(len(w), dtype=bool) for w in clean]
    names: list[np.ndarray] = [np.full(len(w), "", dtype=object) for w in clean]
    std = np.asarray(recipe.std, dtype=np.float64)
    for values, mask, fault in faulty_copies([r.values for r in test], kinds, seed, std):
        starts = window_starts(values.shape[0], recipe.window, recipe.hop)
        hit = np.array([mask[s : s + recipe.window].any() for s in starts], dtype=bool)
        if not hit.any():
            continue
        inputs.append(windows_of(values, recipe)[hit])
        flags.append(np.ones(int(hit.sum()), dtype=bool))
        names.append(np.full(int(hit.sum()), fault.kind, dtype=object))
    shape = (0, recipe.num_channels, recipe.window)
    return AnomalyEval(
        inputs=np.concatenate(inputs) if inputs else np.zeros(shape, dtype=np.float32),
        is_anomaly=np.concatenate(flags) if flags else np.zeros(0, dtype=bool),
        kind=np.concatenate(names).astype(str) if names else np.zeros(0, dtype=str),
    )
