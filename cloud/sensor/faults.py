"""Seeded synthetic sensor faults injected into held-out normal recordings, so anomaly scores can be measured.

Each fault hits one channel from an onset to the end of the recording (spikes: a few single readings after it),
sized in that channel's normal std: drift ramps to 4 std, a level shift steps by 3 std, spikes jump by 6 std,
a stuck sensor repeats its onset reading, a dropped channel reads 0. The mask marks every altered reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FaultKind = Literal["drift", "spikes", "level_shift", "stuck", "dropout"]
FAULT_KINDS: tuple[FaultKind, ...] = ("drift", "spikes", "level_shift", "stuck", "dropout")
DRIFT_STD = 4.0
SHIFT_STD = 3.0
SPIKE_STD = 6.0
SPIKES = 3
# Onsets fall in this share of the recording, so every fault leaves normal readings before it and faulty after.
ONSET_RANGE = (0.25, 0.5)


@dataclass(frozen=True)
class Fault:
    """What was injected where: channel index and the first faulty reading."""

    kind: FaultKind
    channel: int
    onset: int


def inject(
    series: np.ndarray, kind: FaultKind, rng: np.random.Generator, channel_std: np.ndarray
) -> tuple[np.ndarray, np.ndarray, Fault]:
    """A faulty float32 copy of a raw [T, C] recording, the [T] mask of altered readings, and the fault."""
    x = np.array(series, dtype=np.float32, copy=True)
    t, c = x.shape
    if t < 4:
        raise ValueError(f"a recording of {t} readings is too short to inject a fault into")
    channel = int(rng.integers(c))
    onset = int(rng.integers(int(t * ONSET_RANGE[0]), max(int(t * ONSET_RANGE[0]) + 1, int(t * ONSET_RANGE[1]))))
    std = float(channel_std[channel])
    sign = 1.0 if rng.random() < 0.5 else -1.0
    mask = np.zeros(t, dtype=bool)
    col = x[:, channel]
    if kind == "drift":
        ramp = np.linspace(0.0, DRIFT_STD * std, t - onset, dtype=np.float64)
        col[onset:] = (col[onset:] + sign * ramp).astype(np.float32)
        mask[onset + 1 :] = True  # the ramp starts at 0: the onset reading itself is unchanged
    elif kind == "level_shift":
        col[onset:] += np.float32(sign * SHIFT_STD * std)
        mask[onset:] = True
    elif kind == "spikes":
        picks = np.sort(rng.choice(np.arange(onset, t), size=min(SPIKES, t - onset), replace=False))
        col[picks] += np.float32(sign * SPIKE_STD * std)
        mask[picks] = True
    elif kind == "stuck":
        col[onset:] = col[onset]
        mask[onset + 1 :] = True
    elif kind == "dropout":
        col[onset:] = 0.0
        mask[onset:] = True
    else:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
    return x, mask, Fault(kind, channel, onset)


def faulty_copies(
    recordings: list[np.ndarray], kinds: list[FaultKind] | tuple[FaultKind, ...], seed: int, channel_std: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, Fault]]:
    """One faulty copy of every recording per kind, in a fixed order from one seed: the same seed, the same set."""
    rng = np.random.default_rng(seed)
    return [inject(r, kind, rng, channel_std) for r in recordings for kind in kinds]
