"""An anomaly model's gates in sensor terms, decided on evidence like the others.

- Score distribution: the canary cohort's windows per score bin (in threshold units, shared/score_bins.py) against
  the control cohort's, as a PSI with an interval: the class-mix machinery (each device's mix capped at the median
  device's count, impossible result claims left out, a seeded bootstrap) reads the bins as classes.
- Alert rate: windows over the threshold per 1,000 scored windows, canary minus control, on per-window evidence.
- Window shadow (canaries): the same verdict as the incumbent on shadow-checked windows, and a small score
  distance in the incumbent's threshold units (edge.sensor.window_shadow reports both).

A model whose threshold is broken (far below normal scores) moves every window into the top bins and over the
threshold, so it fails the first two against control and the shadow verdicts even where its scores are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fleet.rollout.gates import Sample
from fleet.rollout.plan import DEFAULT_MIN_WINDOWS, MetricGate, TaskGates, shadow_gate
from fleet.rollout.sensor_plan import ScorePsiGate
from shared import score_bins

# At a threshold calibrated on the 99.5th percentile, normal data puts ~5 windows in 1,000 over it: a version may
# add at most 10 more (three times the false alarms) before its alert rate fails.
ALERT_RATE_MARGIN = 10.0
# A retrained model's scores may move; the mean distance from the incumbent's must stay within a quarter of its
# threshold (a threshold at 0.01 of normal scores moves none, which the shadow verdicts catch instead).
SHADOW_MAX_SCORE_DIFF = 0.25
SCORED_WINDOWS = 200  # scored windows each cohort needs before the score and alert gates decide


def bins_of(sample: Sample) -> dict[str, int]:
    """A sample's windows per score bin (the bins it reports with any window)."""
    return {name: int(v) for name in score_bins.NAMES if (v := sample.figures.get(name, 0.0)) > 0}


def score_bin_samples(per_device: Mapping[str, Sequence[Sample]]) -> dict[str, list[Sample]]:
    """Each device's samples with their score bins in place of class counts, for the PSI of the class mix."""
    return {d: [Sample(s.ts_ms, s.figures, bins_of(s)) for s in samples] for d, samples in per_device.items()}


def anomaly_gates() -> TaskGates:
    """An anomaly model's own gates in the default plan."""
    return TaskGates(
        quality=(
            ScorePsiGate(kind="score_psi", max_psi=0.25, min_results=SCORED_WINDOWS, min_windows=DEFAULT_MIN_WINDOWS),
            MetricGate(metric="anomaly_alert_rate", op="<=", threshold=ALERT_RATE_MARGIN,
                       compare="difference_to_control", min_windows=DEFAULT_MIN_WINDOWS, min_frames=SCORED_WINDOWS),
        ),
        shadow=(
            shadow_gate(),  # the same verdict as the incumbent (edge.sensor.window_shadow's agreement)
            MetricGate(metric="shadow_score_diff", op="<=", threshold=SHADOW_MAX_SCORE_DIFF,
                       min_windows=DEFAULT_MIN_WINDOWS, optional=True),
        ),
    )
