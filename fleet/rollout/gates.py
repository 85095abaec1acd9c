"""Gate figures: per-device aggregates, counter growth, the class-mix PSI, and their comparison with control.

Pure functions over telemetry samples; a figure that cannot be computed from the data at hand is None, which the
verdict reads as "hold", never as pass or fail.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from fleet.rollout.plan import Aggregate, MetricGate, Op

# Share given to a class one cohort never predicted, so the PSI stays finite (a common choice in credit scoring).
PSI_EMPTY_SHARE = 1e-4

GateStatus = Literal["pass", "fail", "hold"]


@dataclass(frozen=True)
class Sample:
    """One telemetry report of a device: its time, flat figures and per-class result counts."""

    ts_ms: int
    figures: Mapping[str, float] = field(default_factory=dict)
    class_counts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class GateResult:
    """One gate's outcome for a stage: canary and control figures against the threshold, and why."""

    gate: str
    status: GateStatus
    canary: float | None
    control: float | None
    threshold: float
    detail: str = ""
    failed_devices: tuple[str, ...] = ()
    suspects: Mapping[str, str] = field(default_factory=dict)  # device -> why its figures were left out
    # The interval and both cohorts' distributions (fleet/rollout/evidence.py) for gates judged on evidence.
    evidence: Mapping[str, object] | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON form for the database and `rollout status --json` (`evidence` only where a gate has one)."""
        out: dict[str, object] = {
            "gate": self.gate, "status": self.status, "canary": self.canary, "control": self.control,
            "threshold": self.threshold, "detail": self.detail, "failed_devices": list(self.failed_devices),
            "suspects": dict(sorted(self.suspects.items())),
        }
        if self.evidence is not None:
            out["evidence"] = dict(self.evidence)
        return out


def holds(value: float, op: Op, threshold: float) -> bool:
    """Whether value op threshold."""
    if op == "<=":
        return value <= threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value > threshold


def counter_increase(values: Sequence[float]) -> float:
    """Growth of a counter over consecutive readings; a drop is a restart, after which the new value counts."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def aggregate(values: Sequence[float], how: Aggregate) -> float:
    """Combine a device's readings of one figure in the window (non-empty)."""
    if how == "mean":
        return sum(values) / len(values)
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    if how == "increase":
        return counter_increase(values)
    return values[-1]


def readings(samples: Sequence[Sample], metric: str) -> list[float]:
    """The finite readings of one figure, in time order."""
    ordered = sorted(samples, key=lambda s: s.ts_ms)
    return [float(s.figures[metric]) for s in ordered if metric in s.figures and math.isfinite(s.figures[metric])]


def device_figure(samples: Sequence[Sample], gate: MetricGate) -> float | None:
    """A device's aggregate of the gate's figure, or None with fewer than min_samples readings."""
    values = readings(samples, gate.metric)
    if len(values) < gate.min_samples:
        return None
    return aggregate(values, gate.aggregate)


def device_figures(per_device: Mapping[str, Sequence[Sample]], gate: MetricGate) -> dict[str, float]:
    """Each device's aggregate of the gate's figure (devices short of samples left out)."""
    return {d: f for d, s in per_device.items() if (f := device_figure(s, gate)) is not None}


def compared(value: float, control: float | None, gate: MetricGate) -> float | None:
    """The number the threshold applies to: the figure, or its ratio or difference to control (None: no control)."""
    if gate.compare == "absolute":
        return value
    if control is None:
        return None
    if gate.compare == "difference_to_control":
        return value - control
    if control == 0:
        return 1.0 if value == 0 else math.inf
    return value / control


def class_mix(samples_by_device: Mapping[str, Sequence[Sample]]) -> dict[str, int]:
    """Results per top-1 class summed over a cohort's samples."""
    out: dict[str, int] = {}
    for samples in samples_by_device.values():
        for s in samples:
            for label, n in s.class_counts.items():
                if n > 0:
                    out[label] = out.get(label, 0) + int(n)
    return out


def psi(actual: Mapping[str, float], expected: Mapping[str, float]) -> float:
    """Population stability index of `actual` against `expected`: sum over classes of (a - e) * ln(a / e).

    Shares are of each cohort's own total; a class one side never saw gets PSI_EMPTY_SHARE there.
    """
    total_a, total_e = sum(actual.values()), sum(expected.values())
    if total_a <= 0 or total_e <= 0:
        raise ValueError("PSI needs results in both cohorts")
    value = 0.0
    for label in set(actual) | set(expected):
        a = actual.get(label, 0) / total_a or PSI_EMPTY_SHARE
        e = expected.get(label, 0) / total_e or PSI_EMPTY_SHARE
        value += (a - e) * math.log(a / e)
    return value


def worst(values: Sequence[float], op: Op) -> float:
    """The value nearest to failing: the largest for an upper limit, the smallest for a lower one."""
    return max(values) if op in ("<=", "<") else min(values)
