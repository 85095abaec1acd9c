"""The smoke test of an anomaly model on its golden windows, before it may score a single live window.

Golden samples of an anomaly package: inputs are normalized windows [N, C, T], `logits` the FP32 reference's
per-channel errors [N, C], labels 1 where the reference's score is above the head's threshold. FP32 and FP16 must
reproduce the errors (relative tolerance RTOL); INT8 shifts errors, so it only has to give the same verdict at
its own calibrated threshold on `required` of the windows.
"""

from __future__ import annotations

import numpy as np

from edge.errors import PackageRejected
from shared.golden import GoldenSet
from shared.manifest import Manifest
from shared.task_contract import AnomalyHeadSpec

RTOL = 1e-2
# Errors near zero: an absolute floor, as a share of the largest reference error.
ATOL_SHARE = 1e-3


def anomaly_scores(errors: np.ndarray, spec: AnomalyHeadSpec) -> np.ndarray:
    """Window scores from per-channel errors [N, C], reduced as the head says."""
    return errors.max(axis=1) if spec.reduce == "max" else errors.mean(axis=1)


def smoke_anomaly(errors: np.ndarray, golden: GoldenSet, manifest: Manifest, precision: str, required: float,
                  threshold: float | None) -> tuple[int, float | None]:
    """(windows that passed, max |diff| against the reference errors); PackageRejected naming what is off."""
    spec = manifest.head
    if not isinstance(spec, AnomalyHeadSpec) or manifest.window is None:
        raise PackageRejected(f"{manifest.name} v{manifest.version} is not an anomaly model")
    n, c = len(golden.inputs), manifest.window.num_channels
    if errors.shape != (n, c):
        raise PackageRejected(f"smoke test: outputs have shape {errors.shape}, expected per-channel errors ({n}, {c})")
    if not np.all(np.isfinite(errors)):
        bad = int(np.count_nonzero(~np.isfinite(errors).all(axis=1)))
        raise PackageRejected(f"smoke test: errors of {bad}/{n} golden windows are NaN or infinite")
    reference = golden.logits
    diff = None
    if reference is not None and reference.shape == errors.shape:
        diff = float(np.max(np.abs(errors.astype(np.float64) - reference)))
    if precision != "int8":
        if reference is None or reference.shape != errors.shape:
            raise PackageRejected(f"smoke test: the golden samples lack the reference errors ({n}, {c})")
        atol = ATOL_SHARE * float(np.max(np.abs(reference)) or 1.0)
        close = np.isclose(errors, reference, rtol=RTOL, atol=atol).all(axis=1)
        matched = int(np.count_nonzero(close))
        if matched < n:
            raise PackageRejected(
                f"smoke test: per-channel errors differ from the reference beyond {RTOL:.0%} on {n - matched}/{n} "
                f"golden windows (max |diff| {diff:.3g}); {precision} must reproduce them"
            )
        return matched, diff
    limit = spec.threshold if threshold is None else threshold
    verdicts = anomaly_scores(errors.astype(np.float64), spec) > limit
    matched = int(np.count_nonzero(verdicts == (golden.labels == 1)))
    if matched < required * n - 1e-9:
        raise PackageRejected(
            f"smoke test: the verdict at threshold {limit:.4g} equals the reference's on {matched}/{n} golden windows "
            f"({matched / n:.1%}); {precision} needs at least {required:.0%}"
        )
    return matched, diff
