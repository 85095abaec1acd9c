"""Verdicts on evidence: a seeded bootstrap interval of the canary cohort against the control, read against a margin.

A gate's figure is a distribution, not a number: each device reports one value per telemetry window. A device's
figure is the mean of its windows; a cohort's is the median of its devices' figures from three devices on (one liar
cannot move it), and below three the extreme one (`few`: the worst canary, the strictest control), as robust.py
does. Its uncertainty comes from a bootstrap of each device's windows, stratified by device. Devices are not
resampled: the median of a resample of three devices is one of them, so such an interval spans the cohort's whole
range and never decides; the spread between devices of the same version (hardware, scene) is what the margin
absorbs. One device in one window never decides: a comparison needs `Need.min_windows` windows on each side.

The gate's threshold is the margin (the effect size): with one-sided confidence c the new version

- passes when even the bound least favourable to it is within the margin (not worse by more than it),
- fails when even the bound most favourable to it is beyond the margin (worse by more than it),
- holds otherwise, and always below the minimum sample (devices, windows) on either side.

Seeded: the same inputs give the same interval. Pure numpy, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from fleet.rollout.robust import MEDIAN_MIN_DEVICES

Scale = Literal["absolute", "difference", "ratio"]
Worse = Literal["higher", "lower"]
Few = Literal["max", "min"]
Status = Literal["pass", "fail", "hold"]
Floats = npt.NDArray[np.float64]

# Resamples per interval: the 5 % tail of 1,000 resamples rests on 50 of them, enough for a two-decimal bound.
RESAMPLES = 1000
# Window draws (resamples x windows) up to which the bootstrap is exact; a stage of a thousand devices with 120
# windows each switches to per-device approximations so one analysis stays well under a second.
EXACT_BUDGET = 5_000_000
# One-sided confidence of each bound when a gate does not set one.
CONFIDENCE = 0.95
# Quantiles kept of each cohort's per-window values, for plots (status, web app).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class Need:
    """The minimum sample a comparison needs on each side before it may pass or fail."""

    min_devices: int = 1
    min_windows: int = 6


@dataclass(frozen=True)
class Cohort:
    """What a cohort's figure rests on: devices, windows, their cohort mean and the spread of the window values."""

    devices: int
    windows: int
    mean: float | None
    quantiles: tuple[float, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON form (status, web app)."""
        return {"devices": self.devices, "windows": self.windows, "mean": self.mean,
                "quantiles": dict(zip((f"p{round(q * 100)}" for q in QUANTILES), self.quantiles, strict=False))}


@dataclass(frozen=True)
class Evidence:
    """One comparison: status, the point estimate and its one-sided bounds on the gate's scale, and both cohorts."""

    status: Status
    estimate: float | None
    low: float | None
    high: float | None
    margin: float
    confidence: float
    scale: Scale
    canary: Cohort
    control: Cohort | None
    detail: str

    def as_dict(self) -> dict[str, object]:
        """JSON form, stored with the gate result (additive: older readers ignore it)."""
        return {"status": self.status, "estimate": self.estimate, "low": self.low, "high": self.high,
                "margin": self.margin, "confidence": self.confidence, "scale": self.scale,
                "canary": self.canary.as_dict(), "control": self.control.as_dict() if self.control else None}


def seed_of(*parts: object) -> int:
    """A stable seed from the comparison's identity, so a verdict is reproducible across processes."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


def _arrays(values: Mapping[str, Sequence[float]]) -> list[Floats]:
    return [np.asarray(v, dtype=np.float64) for _, v in sorted(values.items()) if len(v) > 0]


def center(device_figures: Floats, few: Few) -> Floats:
    """The cohort figure along the last axis: the median from MEDIAN_MIN_DEVICES devices on, else the extreme."""
    if device_figures.shape[-1] >= MEDIAN_MIN_DEVICES:
        out: Floats = np.median(device_figures, axis=-1)
    else:
        out = np.max(device_figures, axis=-1) if few == "max" else np.min(device_figures, axis=-1)
    return out


def cohort_figure(values: Mapping[str, Sequence[float]], few: Few) -> float | None:
    """A cohort's figure from its devices' window means (None without any window)."""
    arrays = _arrays(values)
    return float(center(np.array([a.mean() for a in arrays]), few)) if arrays else None


def describe(values: Mapping[str, Sequence[float]], few: Few) -> Cohort:
    """A cohort's size, figure and window quantiles."""
    arrays = _arrays(values)
    if not arrays:
        return Cohort(0, 0, None)
    pooled = np.concatenate(arrays)
    return Cohort(len(arrays), int(pooled.size), cohort_figure(values, few),
                  tuple(float(q) for q in np.quantile(pooled, QUANTILES)))


def resampled(values: Mapping[str, Sequence[float]], few: Few, rng: np.random.Generator, n: int) -> Floats:
    """`n` bootstrap draws of the cohort figure, each device's windows drawn with replacement (stratified by device).

    Above EXACT_BUDGET window draws (a large stage), each device's resampled mean is drawn from its normal
    approximation instead (mean, standard error of its windows), which costs one draw per device.
    """
    arrays = _arrays(values)
    if n * sum(a.size for a in arrays) <= EXACT_BUDGET:
        per_device = np.stack([a[rng.integers(0, a.size, (n, a.size))].mean(axis=1) for a in arrays], axis=1)
    else:
        means = np.array([a.mean() for a in arrays])
        errors = np.array([a.std() / np.sqrt(a.size) for a in arrays])
        per_device = rng.normal(means, errors, (n, len(arrays)))
    return center(per_device, few)


def _short(name: str, c: Cohort, need: Need) -> str | None:
    if c.devices < need.min_devices or c.windows < need.min_windows:
        return (f"{name} has {c.devices} devices and {c.windows} windows; needs {need.min_devices} and "
                f"{need.min_windows}")
    return None


def on_scale(canary: Floats | float, control: Floats | float, scale: Scale) -> Floats | float:
    """The figure the margin applies to: the canary's own, its difference to control, or its ratio."""
    if scale == "absolute":
        return canary
    if scale == "difference":
        return np.subtract(canary, control)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.divide(canary, control)
    return np.where(np.isnan(ratio), 1.0, ratio)  # 0/0: equal


def decide(estimate: float, low: float, high: float, margin: float, worse: Worse) -> Status:
    """Pass within the margin at the unfavourable bound, fail beyond it at the favourable one, else hold."""
    if worse == "higher":
        return "pass" if high <= margin else "fail" if low > margin else "hold"
    return "pass" if low >= margin else "fail" if high < margin else "hold"


def compare(
    canary: Mapping[str, Sequence[float]],
    control: Mapping[str, Sequence[float]] | float | None,
    *,
    scale: Scale,
    worse: Worse,
    margin: float,
    confidence: float = CONFIDENCE,
    need: Need = Need(),
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> Evidence:
    """The canary cohort's per-window values against the control's (or a fixed reference figure, or nothing for an
    absolute scale), as a status with its interval.

    `scale` says what the margin applies to: the canary figure itself, its difference to control, or its ratio.
    """
    worst: Few = "max" if worse == "higher" else "min"
    strictest: Few = "min" if worse == "higher" else "max"
    c = describe(canary, worst)
    ref: Cohort | None = describe(control, strictest) if isinstance(control, Mapping) else None
    base = dict(margin=margin, confidence=confidence, scale=scale, canary=c, control=ref)
    why = [w for w in (_short("canary", c, need), _short("control", ref, need) if ref else None) if w]
    if scale != "absolute" and control is None:
        why.append("no control or baseline figure yet")
    if why or c.mean is None or (ref is not None and ref.mean is None):
        return Evidence("hold", None, None, None, detail="; ".join(why) or "no data", **base)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    draws_c = resampled(canary, worst, rng, resamples)
    if isinstance(control, Mapping):
        ref_point: float = ref.mean  # type: ignore[union-attr,assignment]
        draws_r: Floats | float = resampled(control, strictest, rng, resamples)
    else:
        ref_point = float(control) if control is not None else 0.0
        draws_r = ref_point
    estimate = float(on_scale(c.mean, ref_point, scale))
    draws = np.asarray(on_scale(draws_c, draws_r, scale), dtype=np.float64)
    low, high = (float(x) for x in np.quantile(draws, [1 - confidence, confidence]))
    status = decide(estimate, low, high, margin, worse)
    word = {"pass": "within", "fail": "beyond", "hold": "not yet clear of"}[status]
    what = {"absolute": "", "difference": " - control", "ratio": " / control"}[scale]
    detail = (f"{estimate:.4g}{what} [{low:.4g}, {high:.4g}] at {confidence:g} is {word} the margin {margin:g} "
              f"({c.devices} devices, {c.windows} windows" + (f"; control {ref.devices} devices, {ref.windows} "
                                                              f"windows)" if ref else ")"))
    return Evidence(status, estimate, low, high, detail=detail, **base)  # type: ignore[arg-type]


# Share given to a class one side never predicted (as gates.PSI_EMPTY_SHARE), so the PSI stays finite.
EMPTY_SHARE = 1e-4

Windows = Mapping[str, Sequence[Mapping[str, float]]]  # device -> its windows' class counts


def _count_matrices(windows: Windows, labels: Sequence[str]) -> dict[str, Floats]:
    """Each device's windows with results, as a (windows x classes) count matrix."""
    out = {}
    for device, counts in sorted(windows.items()):
        rows = [[max(0.0, float(c.get(label, 0))) for label in labels] for c in counts]
        m = np.asarray([r for r in rows if sum(r) > 0], dtype=np.float64).reshape(-1, len(labels))
        if m.shape[0]:
            out[device] = m
    return out


def _capped_mix(totals: Floats, per_device: Floats, weights: Floats) -> Floats:
    """Cohort mixes from device count sums (..., devices, classes), each device weighed by its capped count."""
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.nan_to_num(per_device / totals[..., None])
    mix: Floats = np.einsum("...dc,d->...c", shares, weights) / weights.sum()
    return mix


def _psi(actual: Floats, expected: Floats) -> Floats:
    a = np.where(actual > 0, actual, EMPTY_SHARE)
    e = np.where(expected > 0, expected, EMPTY_SHARE)
    out: Floats = np.sum((a - e) * np.log(a / e), axis=-1)
    return out


def _mix_draws(mats: Mapping[str, Floats], cap: float, rng: np.random.Generator, n: int) -> tuple[Floats, Floats]:
    """The cohort's mix and `n` bootstrap draws of it: each device's windows with replacement, or above
    EXACT_BUDGET window draws its class counts drawn from a multinomial of its own mix and total."""
    sums = np.stack([m.sum(axis=0) for m in mats.values()])
    weights = np.minimum(sums.sum(axis=1), cap)
    if n * sum(m.size for m in mats.values()) <= EXACT_BUDGET:
        draws = np.stack([m[rng.integers(0, m.shape[0], (n, m.shape[0]))].sum(axis=1) for m in mats.values()],
                         axis=1)
    else:
        totals = sums.sum(axis=1)
        draws = rng.multinomial(totals.astype(np.int64), sums / totals[:, None], size=(n, len(totals))).astype(
            np.float64)
    return _capped_mix(sums.sum(axis=1), sums, weights), _capped_mix(draws.sum(axis=2), draws, weights)


def psi_compare(
    canary: Windows, control: Windows | Mapping[str, float], *, max_psi: float, cap_canary: float,
    cap_control: float, confidence: float = CONFIDENCE, need: Need = Need(), min_results: int = 1,
    resamples: int = RESAMPLES, seed: int = 0, reference: str = "control",
) -> Evidence:
    """The class-mix PSI of the canary cohort against the control's (or a baseline's fixed counts), as an interval.

    Mixes are as robust.cohort_mix makes them: each device's own shares, weighted by its result count capped at
    `cap_*` (the median device's). Fails when even the lower bound exceeds max_psi, passes when the upper bound
    does not (sampling noise only adds PSI, so a small sample holds rather than passes).
    """
    fixed = not any(isinstance(v, Sequence) for v in control.values())
    labels = sorted({k for ws in canary.values() for c in ws for k in c} | (
        set(control) if fixed else {k for ws in control.values() for c in ws for k in c}))  # type: ignore[union-attr]
    can = _count_matrices(canary, labels)
    n_can = float(sum(min(m.sum(), cap_canary) for m in can.values()))
    c = Cohort(len(can), sum(m.shape[0] for m in can.values()), None)
    if fixed:
        ref_counts = np.asarray([float(control.get(label, 0)) for label in labels])  # type: ignore[arg-type]
        ref: Cohort | None = None
        n_ref = float(ref_counts.sum())
    else:
        ref_mats = _count_matrices(control, labels)  # type: ignore[arg-type]
        ref = Cohort(len(ref_mats), sum(m.shape[0] for m in ref_mats.values()), None)
        n_ref = float(sum(min(m.sum(), cap_control) for m in ref_mats.values()))
    base = dict(margin=max_psi, confidence=confidence, scale="absolute", canary=c, control=ref)
    why = [w for w in (_short("canary", c, need), _short(reference, ref, need) if ref else None) if w]
    if n_can < min_results or n_ref < min_results:
        why.append(f"results in window: canary {n_can:.0f}, {reference} {n_ref:.0f}; each needs {min_results}")
    if why:
        return Evidence("hold", None, None, None, detail="; ".join(why), **base)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    mix_c, draws_c = _mix_draws(can, cap_canary, rng, resamples)
    if fixed:
        mix_r: Floats = ref_counts / n_ref
        draws_r: Floats = mix_r
    else:
        mix_r, draws_r = _mix_draws(ref_mats, cap_control, rng, resamples)
    estimate = float(_psi(mix_c, mix_r))
    low, high = (float(x) for x in np.quantile(_psi(draws_c, draws_r), [1 - confidence, confidence]))
    status = decide(estimate, low, high, max_psi, "higher")
    word = {"pass": "within", "fail": "beyond", "hold": "not yet clear of"}[status]
    detail = (f"psi {estimate:.4g} [{low:.4g}, {high:.4g}] at {confidence:g} of {n_can:.0f} canary results against "
              f"{n_ref:.0f} {reference} results is {word} {max_psi:g}")
    return Evidence(status, estimate, low, high, detail=detail, **base)  # type: ignore[arg-type]
