"""Run a loaded model on the package's golden samples (shared.golden) before it may serve a single frame.

Classifiers must reproduce the golden top-1; detectors must find the FP32 reference's boxes (F1 at IoU 0.5, same
class) at least `detection_min_agreement` of the way, whatever their precision: a box scoring right at the
threshold may come and go between runtimes even in FP32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.backends.base import LoadedModel
from edge.errors import BackendError, PackageRejected
from edge.golden_agreement import DETECTION_MIN_AGREEMENT, DetectionScorer
from edge.sensor.golden import smoke_anomaly
from shared.errors import IntegrityError
from shared.golden import DetectionGoldenSet, GoldenSet, read_task_golden
from shared.integrity import verify_file
from shared.manifest import Manifest, Precision

# FP32 must reproduce the trainer's top-1 exactly; reduced precisions may flip a few borderline samples.
EXACT_PRECISIONS: frozenset[str] = frozenset({"fp32"})
REDUCED_MIN_AGREEMENT = 0.9


@dataclass(frozen=True)
class SmokeResult:
    """What the smoke test measured."""

    samples: int
    matched: int
    required: float
    max_abs_diff: float | None
    # A detector's F1 against the reference boxes (matched then counts boxes); None for classifiers.
    f1: float | None = None

    @property
    def agreement(self) -> float:
        """Fraction of samples whose top-1 equals the golden label, or a detector's F1."""
        return self.f1 if self.f1 is not None else self.matched / self.samples

    @property
    def summary(self) -> str:
        """For the log line."""
        if self.f1 is not None:
            return f"detection F1 {self.f1:.3f} against FP32 over {self.samples} samples, {self.matched} boxes matched"
        diff = "n/a" if self.max_abs_diff is None else f"{self.max_abs_diff:.2e}"
        return f"{self.matched}/{self.samples} top-1, max |diff| {diff}"


def required_agreement(precision: Precision, reduced: float = REDUCED_MIN_AGREEMENT) -> float:
    """Minimum top-1 agreement with the golden labels: all samples for fp32, `reduced` for fp16/int8/tensorrt."""
    return 1.0 if precision in EXACT_PRECISIONS else reduced


def load_golden(path: Path, manifest: Manifest) -> GoldenSet | DetectionGoldenSet:
    """Verify golden.npz against the manifest, then read it in its task's shared form without ever unpickling."""
    try:
        verify_file(path, manifest.golden.sha256, manifest.golden.bytes)
    except (IntegrityError, OSError) as exc:
        raise PackageRejected(f"golden samples: {exc}") from exc
    try:
        # An anomaly model's reference outputs are per-channel errors: one column per channel, not per label.
        window = manifest.window if manifest.task == "anomaly" else None
        classes = window.num_channels if window is not None else len(manifest.labels)
        return read_task_golden(path, task=manifest.task, count=manifest.golden.count, classes=classes)
    except ValueError as exc:
        raise PackageRejected(str(exc)) from exc


def _fixed_batch(shape: tuple[int | str, ...]) -> int | None:
    first = shape[0] if shape else None
    return first if isinstance(first, int) and first > 0 else None


def _run_batches(loaded: LoadedModel, inputs: np.ndarray) -> np.ndarray:
    """Run all inputs, in chunks padded to the model's batch size when that size is fixed."""
    batch = _fixed_batch(loaded.input_shape)
    if batch is None:
        return np.asarray(loaded.run(inputs))
    outs = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), dtype=chunk.dtype)])
        outs.append(np.asarray(loaded.run(np.ascontiguousarray(chunk)))[: batch - pad])
    return np.concatenate(outs)


def _check_input_fits(loaded: LoadedModel, inputs: np.ndarray) -> None:
    want = loaded.input_shape
    got = inputs.shape
    fits = len(want) == len(got) and all(
        not isinstance(w, int) or w <= 0 or w == g for w, g in zip(want[1:], got[1:], strict=True)
    )
    if not fits:
        raise PackageRejected(f"golden inputs of shape {got} do not fit the model input {want}")


def run_smoke_test(
    loaded: LoadedModel,
    golden_path: Path,
    manifest: Manifest,
    *,
    precision: Precision = "fp32",
    reduced_min_agreement: float = REDUCED_MIN_AGREEMENT,
    detection_min_agreement: float = DETECTION_MIN_AGREEMENT,
    threshold: float | None = None,
) -> SmokeResult:
    """Outputs finite, shaped (N, len(labels)), and top-1 equal to the golden labels (a detector: its boxes agree
    with the reference's); PackageRejected otherwise."""
    golden = load_golden(golden_path, manifest)
    _check_input_fits(loaded, golden.inputs)
    if isinstance(golden, DetectionGoldenSet):
        return _smoke_detector(loaded, golden, manifest, detection_min_agreement)
    try:
        logits = _run_batches(loaded, golden.inputs)
    except BackendError as exc:
        raise PackageRejected(f"smoke test: the model failed on the golden inputs: {exc}") from exc
    if manifest.task == "anomaly":
        # `threshold`: the variant's own calibrated one (INT8 is judged on its verdicts at it).
        required = required_agreement(precision, reduced_min_agreement)
        matched, diff = smoke_anomaly(logits, golden, manifest, precision, required, threshold)
        return SmokeResult(samples=len(golden.inputs), matched=matched, required=required, max_abs_diff=diff)
    n, classes = len(golden.labels), len(manifest.labels)
    if logits.shape != (n, classes):
        raise PackageRejected(f"smoke test: outputs have shape {logits.shape}, expected ({n}, {classes})")
    if not np.all(np.isfinite(logits)):
        bad = int(np.count_nonzero(~np.isfinite(logits).all(axis=1)))
        raise PackageRejected(f"smoke test: outputs of {bad}/{n} golden samples are NaN or infinite")
    matched = int(np.count_nonzero(logits.argmax(axis=1) == golden.labels))
    required = required_agreement(precision, reduced_min_agreement)
    if matched < required * n - 1e-9:
        raise PackageRejected(
            f"smoke test: top-1 equals the golden label on {matched}/{n} samples ({matched / n:.1%}); "
            f"{precision} needs at least {required:.0%}"
        )
    diff = None
    if golden.logits is not None and golden.logits.shape == logits.shape:
        diff = float(np.max(np.abs(logits.astype(np.float64) - golden.logits)))
    return SmokeResult(samples=n, matched=matched, required=required, max_abs_diff=diff)


def _smoke_detector(
    loaded: LoadedModel, golden: DetectionGoldenSet, manifest: Manifest, required: float
) -> SmokeResult:
    """The detector's boxes on the golden inputs against the FP32 reference's, as F1."""
    scorer = DetectionScorer(manifest, golden.detections(manifest.labels), required)
    try:
        found = scorer.predict(loaded, golden.inputs)
    except BackendError as exc:
        raise PackageRejected(f"smoke test: the model failed on the golden inputs: {exc}") from exc
    agreement = golden.agreement(found, manifest.labels)
    n = len(golden.inputs)
    if agreement.f1 < required - 1e-9:
        raise PackageRejected(
            f"smoke test: its boxes agree with the FP32 reference's at F1 {agreement.f1:.3f} on {n} golden samples "
            f"({agreement.matched} of {agreement.reference} reference boxes found, {agreement.candidate} boxes "
            f"reported); detectors need at least {required:.2f}"
        )
    return SmokeResult(samples=n, matched=agreement.matched, required=required, max_abs_diff=None, f1=agreement.f1)
