"""What a simulated device does on a new version: the behaviour mix of a fleet and the figures each one reports.

Pure: a seeded random source per device, no I/O. "New version" is any version above the one the device started on;
behaviours change nothing while a device serves its initial version, so a rollout sees them only on canaries. The
liars are the exception: they lie on every version, as a compromised camera would, to test that one device cannot
move a rollout (`liar_flood` claims 4e12 results of one class per report, `liar_mask` an e2e p95 of 5e7 ms, within
the metric table's range so it reaches the gates). `permuted` sees a skewed scene (class i weighs 1/(i+1)) on every
version and its new version names each result's class one label further on, with unchanged confidence: a model
whose labels are permuted. `noisy` reports latency as a loaded machine does on every version; `slower` is a new
version 1.25x slower (within the default margin).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, get_args

from fleet.sim.mix import parse_shares, spread

Behaviour = Literal["good", "slow", "unconfident", "drifting", "crash_on_install", "offline", "never_converging",
                    "liar_flood", "liar_mask", "permuted", "noisy", "slower"]
BEHAVIOURS: tuple[Behaviour, ...] = get_args(Behaviour)
BASE_E2E_MS = 20.0
SLOW_FACTOR = 3.0
FLOOD_RESULTS = 4_000_000_000_000
MASK_E2E_MS = 5e7
# 'slower': a new version within the latency gate's default margin (1.5x control).
SLOWER_FACTOR = 1.25
# 'noisy': e2e p95 per window as on a loaded 2-core machine (lognormal spread, some windows spiking 3x), any version.
NOISE_SIGMA, SPIKE_SHARE, SPIKE_FACTOR = 0.3, 0.05, 3.0


def parse_mix(text: str) -> dict[Behaviour, float]:
    """'good=0.8,slow=0.1,offline=0.1' -> shares; the rest of 1.0 (if any) is 'good'. SimulatorError when bad."""
    return parse_shares(text, BEHAVIOURS, "good", "behaviour")


def assign(mix: dict[Behaviour, float], n: int) -> list[Behaviour]:
    """Deterministic behaviour per device index: exact counts by largest remainder, spread across the fleet."""
    return spread(mix, BEHAVIOURS, n, seed=n)


@dataclass
class Figures:
    """One telemetry window's quality and latency figures."""

    e2e_ms_p95: float
    conf_mean: float
    low_conf_share: float
    class_counts: dict[str, int]


def window(behaviour: Behaviour, new_version: bool, results: int, labels: list[str], rng: random.Random) -> Figures:
    """Figures of one window of `results` results for a device of this behaviour."""
    e2e = BASE_E2E_MS * rng.uniform(0.9, 1.1)
    conf, low = rng.uniform(0.88, 0.92), rng.uniform(0.03, 0.06)
    weights = [1.0] * len(labels)
    if new_version and behaviour == "slow":
        e2e *= SLOW_FACTOR
    if new_version and behaviour == "slower":
        e2e *= SLOWER_FACTOR
    if behaviour == "noisy":
        e2e *= rng.lognormvariate(0, NOISE_SIGMA) * (SPIKE_FACTOR if rng.random() < SPIKE_SHARE else 1.0)
    if behaviour == "permuted":
        weights = [1.0 / (i + 1) for i in range(len(labels))]
    if new_version and behaviour == "unconfident":
        conf, low = rng.uniform(0.5, 0.56), rng.uniform(0.4, 0.5)
    if new_version and behaviour == "drifting":
        weights = [8.0 if i < max(1, len(labels) // 5) else 0.3 for i in range(len(labels))]
    if behaviour == "liar_mask":
        e2e = MASK_E2E_MS
    counts: dict[str, int] = {}
    for label in rng.choices(labels, weights=weights, k=results):
        counts[label] = counts.get(label, 0) + 1
    if new_version and behaviour == "permuted":
        counts = {labels[(labels.index(label) + 1) % len(labels)]: n for label, n in counts.items()}
    if behaviour == "liar_flood":
        counts = {labels[0]: FLOOD_RESULTS}
    return Figures(e2e, conf, low, counts)
