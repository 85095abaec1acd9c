"""Verification gates: pure verdicts on held-out test logits, so no variant is published on faith."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# Accuracies are ratios of counts; a drop exactly at the limit must pass despite float rounding.
_SLACK = 1e-9


@dataclass(frozen=True)
class GateResult:
    """One variant's verdict with the figures behind it; `reason` states them whether it passed or not."""

    precision: str
    passed: bool
    reason: str
    samples: int
    accuracy: float
    reference_accuracy: float
    agreement: float
    max_abs_diff: float


def top1(logits: np.ndarray) -> np.ndarray:
    """Predicted class per row."""
    return np.asarray(logits).argmax(axis=1).astype(np.int64)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose top-1 equals the label."""
    return float((top1(logits) == np.asarray(labels)).mean()) if len(labels) else 0.0


def _invalid(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> str | None:
    """Why the arrays cannot be compared at all, or None."""
    if reference.ndim != 2 or reference.shape[0] == 0:
        return f"no test logits to compare (reference shape {reference.shape})"
    if logits.shape != reference.shape:
        return f"outputs have shape {logits.shape}, the torch model gives {reference.shape}"
    if labels.shape != (reference.shape[0],):
        return f"{labels.shape} labels for {reference.shape[0]} samples"
    bad = int((~np.isfinite(logits)).any(axis=1).sum())
    if bad:
        return f"outputs are NaN or infinite for {bad} of {logits.shape[0]} samples"
    return None


def _figures(
    precision: str, reference: np.ndarray, logits: np.ndarray, labels: np.ndarray
) -> tuple[GateResult, int] | GateResult:
    """Shared figures (result with passed unset, matched count), or a failed result for unusable arrays."""
    reference, logits, labels = np.asarray(reference), np.asarray(logits), np.asarray(labels)
    why = _invalid(reference, logits, labels)
    if why is not None:
        nan = float("nan")
        return GateResult(precision, False, why, int(labels.shape[0]) if labels.ndim else 0, 0.0, 0.0, 0.0, nan)
    matched = int((top1(reference) == top1(logits)).sum())
    n = reference.shape[0]
    diff = float(np.abs(logits.astype(np.float64) - reference.astype(np.float64)).max())
    base = GateResult(precision, False, "", n, accuracy(logits, labels), accuracy(reference, labels), matched / n, diff)
    return base, matched


def fp32_gate(reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, max_abs_diff: float = 1e-4) -> GateResult:
    """FP32 must reproduce torch: top-1 on every sample and every logit within max_abs_diff."""
    got = _figures("fp32", reference, logits, labels)
    if isinstance(got, GateResult):
        return got
    r, matched = got
    same = matched == r.samples
    close = r.max_abs_diff <= max_abs_diff
    figures = (
        f"top-1 agrees with torch on {matched}/{r.samples} samples ({r.agreement:.2%}, need 100%), "
        f"max |logit diff| {r.max_abs_diff:.2e} (limit {max_abs_diff:.1e})"
    )
    return replace(r, passed=same and close, reason=figures)


def agreement_gate(
    precision: str, reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, min_agreement: float = 0.995
) -> GateResult:
    """Reduced-precision float (FP16, engines): top-1 agreement with torch of at least min_agreement."""
    got = _figures(precision, reference, logits, labels)
    if isinstance(got, GateResult):
        return got
    r, matched = got
    ok = r.agreement + _SLACK >= min_agreement
    figures = (
        f"top-1 agreement with torch {r.agreement:.4f} ({matched}/{r.samples}) "
        f"{'meets' if ok else 'is below'} {min_agreement:.4f}; max |logit diff| {r.max_abs_diff:.2e}"
    )
    return replace(r, passed=ok, reason=figures)


def fp16_gate(
    reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, min_agreement: float = 0.995
) -> GateResult:
    """FP16: top-1 agreement with torch of at least min_agreement."""
    return agreement_gate("fp16", reference, logits, labels, min_agreement)


def int8_gate(
    reference: np.ndarray, logits: np.ndarray, labels: np.ndarray, max_accuracy_drop: float = 0.01
) -> GateResult:
    """INT8: test accuracy at most max_accuracy_drop below the torch model's (the task metric, not agreement)."""
    got = _figures("int8", reference, logits, labels)
    if isinstance(got, GateResult):
        return got
    r, _ = got
    drop = r.reference_accuracy - r.accuracy
    ok = drop <= max_accuracy_drop + _SLACK
    if drop > 0:
        relation = f"{drop * 100:.1f} points below"
    else:
        relation = "not below" if drop == 0 else f"{-drop * 100:.1f} points above"
    figures = (
        f"accuracy {r.accuracy:.3f} is {relation} torch {r.reference_accuracy:.3f} "
        f"(limit {max_accuracy_drop * 100:.1f}); top-1 agreement {r.agreement:.4f}"
    )
    return replace(r, passed=ok, reason=figures)
