"""Figures one device cannot move: medians across devices, per-device class mixes, and who is suspect and why.

Devices are untrusted input. A cohort's figure is the median of its devices' figures (the strictest of them below
three devices, where a median is just a mean). A class mix averages each device's own normalised mix, its weight
capped at the median device's result count (a device claiming a billion results weighs no more than a typical
one), and a device's result count is bounded by what its reported frame rate allows over the window. A device whose
figure is orders of magnitude off its peers', whose own readings jump by orders of magnitude, or who claims more
results than it could have inferred is *suspect*: left out of the figure, and named in the rollout's status with
the reason.

Pure functions over telemetry samples; no I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from fleet.rollout.gates import Sample, device_figures, readings
from fleet.rollout.plan import MetricGate, Op
from shared.metrics import BY_NAME

# How far (a factor either way) a device's figure may sit from the median of its peers, or its own readings from
# each other, before it is suspect: two orders of magnitude, far beyond any version's real effect on one device.
SUSPECT_FACTOR = 100.0
# Slack on "results <= fps x window": frame-rate readings are window averages and windows do not align exactly.
RESULTS_SLACK = 1.5
# A median needs this many devices to ignore one liar; below it a cohort's figure is its strictest device's.
MEDIAN_MIN_DEVICES = 3
# Devices a cohort needs before one can be called an outlier (with two, which one is off is ambiguous).
OUTLIER_MIN_DEVICES = 3
# Units of figures that scale freely (latency, rates, sizes): an outlier there is orders of magnitude off.
# Shares and confidences (unit "") are bounded in [0, 1]; the median alone keeps one device from moving them.
SCALED_UNITS = frozenset({"ms", "s", "frames/s", "frames", "MiB"})


def scaled(metric: str) -> bool:
    """Whether a figure scales freely, so an order-of-magnitude test applies to it."""
    m = BY_NAME.get(metric)
    return m is not None and m.kind == "gauge" and m.unit in SCALED_UNITS


def off_by(value: float, reference: float) -> float:
    """How many times apart two positive figures are (>= 1); inf when only one of them is zero."""
    if value <= 0 or reference <= 0:
        return 1.0 if value == reference else math.inf
    return max(value / reference, reference / value)


def outliers(figures: Mapping[str, float], factor: float = SUSPECT_FACTOR) -> dict[str, float]:
    """Devices whose figure is more than `factor` times off the median of all (one liar cannot move it), with it."""
    if len(figures) < OUTLIER_MIN_DEVICES:
        return {}
    ref = float(statistics.median(figures.values()))
    if ref <= 0:
        return {}
    return {device: ref for device, value in figures.items() if off_by(value, ref) > factor}


def outlier_reason(what: str, value: float, ref: float, factor: float = SUSPECT_FACTOR) -> str:
    """Why an outlier is suspect, in words."""
    return f"{what} {value:.4g} is over {factor:g}x off its cohort's median {ref:.4g}"


def jumps(values: Sequence[float], factor: float = SUSPECT_FACTOR) -> str | None:
    """Why a device's own readings are inconsistent over time (they span more than `factor`), or None."""
    positive = [v for v in values if v > 0]
    if len(positive) < 2:
        return None
    lo, hi = min(positive), max(positive)
    if hi / lo > factor:
        return f"its readings jump from {lo:.4g} to {hi:.4g} (over {factor:g}x)"
    return None


def strictest(values: Sequence[float], op: Op) -> float:
    """The control figure that makes a comparison hardest to pass: the smallest for an upper limit."""
    return min(values) if op in ("<=", "<") else max(values)


def cohort_value(values: Sequence[float], op: Op) -> float:
    """A cohort's figure from its devices' figures: the median, or the strictest when too few for a median."""
    if len(values) >= MEDIAN_MIN_DEVICES:
        return float(statistics.median(values))
    return strictest(values, op)


def claimed_results(samples: Sequence[Sample]) -> int:
    """Results a device says it produced over these samples (its class counts added up)."""
    return sum(max(0, int(n)) for s in samples for n in s.class_counts.values())


def allowed_results(samples: Sequence[Sample], window_s: float) -> float | None:
    """The most results a device can have produced in the window at its highest reported frame rate (None: no fps)."""
    fps = readings(samples, "fps")
    if not fps:
        return None
    return max(0.0, max(fps)) * window_s * RESULTS_SLACK + len(samples)


def device_mix(samples: Sequence[Sample]) -> dict[str, float]:
    """A device's class mix as shares of its own results (empty when it counted none)."""
    counts: dict[str, float] = {}
    for s in samples:
        for label, n in s.class_counts.items():
            if n > 0:
                counts[label] = counts.get(label, 0.0) + float(n)
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()} if total > 0 else {}


def contribution_cap(counts: Sequence[float]) -> float:
    """The most results one device adds to a cohort: the median device's count (the smallest below three devices)."""
    if not counts:
        return 0.0
    return float(statistics.median(counts)) if len(counts) >= MEDIAN_MIN_DEVICES else min(counts)


def cohort_mix(per_device: Mapping[str, Sequence[Sample]]) -> tuple[dict[str, float], float]:
    """A cohort's class mix and the results it rests on, with each device's contribution capped.

    Each device's own mix is normalised, then devices are averaged weighted by their result count capped at the
    median device's: a device claiming a billion results weighs no more than a typical one.
    """
    mixes = {d: device_mix(s) for d, s in per_device.items()}
    counts = {d: float(claimed_results(s)) for d, s in per_device.items() if mixes[d]}
    cap = contribution_cap(list(counts.values()))
    weights = {d: min(n, cap) for d, n in counts.items()}
    total = sum(weights.values())
    out: dict[str, float] = {}
    if total <= 0:
        return out, 0.0
    for device, w in weights.items():
        for label, share in mixes[device].items():
            out[label] = out.get(label, 0.0) + share * w / total
    return out, total


def result_suspects(per_device: Mapping[str, Sequence[Sample]], window_s: float,
                    fps_peers: Mapping[str, float]) -> dict[str, str]:
    """Devices whose result or frame-rate claims are impossible or orders of magnitude off their peers, with why.

    `fps_peers` is every judged device's highest frame rate (both cohorts), so one device claiming a frame rate far
    above the fleet's cannot make its result count plausible by lying about both.
    """
    out: dict[str, str] = {}
    fps_off = outliers(fps_peers)
    claims = {d: claimed_results(s) for d, s in per_device.items()}
    for device, samples in per_device.items():
        claimed = claims[device]
        allowed = allowed_results(samples, window_s)
        if device in fps_off and fps_peers[device] > fps_off[device]:  # a low rate makes no claim plausible
            out[device] = outlier_reason("reported fps", fps_peers[device], fps_off[device])
        elif allowed is None and claimed > 0:
            out[device] = f"claims {claimed:.4g} results but reports no fps, so they cannot be bounded"
        elif allowed is not None and claimed > allowed:
            out[device] = (f"claims {claimed:.4g} results in the {window_s:g} s window; its reported fps allows at "
                           f"most {allowed:.4g}")
    counted = {d: float(n) for d, n in claims.items() if d not in out and n > 0}
    for device, ref in outliers(counted).items():
        if counted[device] > ref:  # a flood; a device with few results already weighs little
            out[device] = outlier_reason("result count", counted[device], ref)
    return out


def fps_of(samples: Sequence[Sample]) -> float | None:
    """A device's highest reported frame rate in the samples, or None."""
    fps = readings(samples, "fps")
    return max(fps) if fps else None


def _screened(gate: MetricGate) -> bool:
    """Whether a gate's figure gets the order-of-magnitude tests (free-scaling gauges, not counter growth)."""
    return gate.aggregate != "increase" and scaled(gate.metric)


def control_figure(
    window: Mapping[str, Sequence[Sample]], history: Mapping[str, Sequence[Sample]], gate: MetricGate,
) -> tuple[float | None, dict[str, str]]:
    """The control cohort's figure for a gate from devices whose reports are consistent, and the suspects.

    `window` holds each control device's samples in the analysis window, `history` its samples over a longer span
    (the window and the ones before it): a device whose own readings jump by orders of magnitude there, or whose
    figure is orders of magnitude off the other control devices', is suspect and left out. The figure is the median
    of the rest (their strictest below three devices).
    """
    figures = device_figures(window, gate)
    suspects: dict[str, str] = {}
    if _screened(gate):
        for device in list(figures):
            why = jumps(readings(history.get(device, window[device]), gate.metric))
            if why is not None:
                suspects[device] = f"control: {gate.metric}: {why}"
                del figures[device]
        for device, ref in outliers(figures).items():
            suspects[device] = f"control: {outlier_reason(gate.metric, figures.pop(device), ref)}"
    value = cohort_value(list(figures.values()), gate.op) if figures else None
    return value, suspects


def canary_suspects(figures: dict[str, float], gate: MetricGate) -> dict[str, str]:
    """Canary devices whose figure is orders of magnitude off the other canaries' (removed from `figures`)."""
    out: dict[str, str] = {}
    if _screened(gate):
        for device, ref in outliers(figures).items():
            out[device] = f"canary: {outlier_reason(gate.metric, figures.pop(device), ref)}"
    return out
