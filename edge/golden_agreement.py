"""How far a loaded model agrees with the FP32 reference on the golden samples, in its task's terms.

Classification: the share of samples whose top-1 equals the reference's. Detection: the F1 of the model's boxes
against the reference boxes (shared.tasks.detection_agreement: same class, IoU >= 0.5), decoded by the manifest's
head in model-input pixels, as the cloud decoded the reference. The runtime choice's gates use these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from edge.backends.base import LoadedModel
from edge.errors import BackendError
from edge.task_decode import DetectionDecoder, RawOutput, Runner, as_outputs, decoder_for
from shared.errors import TaskContractError
from shared.golden import DetectionGoldenSet, GoldenSet
from shared.manifest import Manifest
from shared.task_contract import AnomalyHeadSpec
from shared.tasks import Detections
from shared.tasks.agreement import detection_agreement

# A detector's boxes on the golden samples must agree this much with FP32's unless the config says otherwise.
DETECTION_MIN_AGREEMENT = 0.9


def run_golden(model: LoadedModel, inputs: np.ndarray) -> np.ndarray:
    """The first output for all inputs, in chunks padded to the model's batch when that batch is fixed."""
    out = run_golden_outputs(model, inputs, model.run)
    assert isinstance(out, np.ndarray)
    return out


def run_golden_outputs(model: LoadedModel, inputs: np.ndarray, run: Runner) -> RawOutput:
    """What `run` returns for all inputs (one output, or every output by name), chunked like run_golden."""
    first = model.input_shape[0] if model.input_shape else None
    batch = first if isinstance(first, int) and first > 0 else len(inputs)
    chunks: list[RawOutput] = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start : start + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), dtype=chunk.dtype)])
        raw = run(np.ascontiguousarray(chunk))
        keep = batch - pad
        chunks.append({k: np.asarray(v)[:keep] for k, v in raw.items()} if isinstance(raw, Mapping)
                      else np.asarray(raw)[:keep])
    if isinstance(chunks[0], Mapping):
        return {k: np.concatenate([c[k] for c in chunks if isinstance(c, Mapping)]) for k in chunks[0]}
    return np.concatenate([c for c in chunks if isinstance(c, np.ndarray)])


class GoldenScorer(Protocol):
    """A task's results on golden inputs and their agreement with a reference's."""

    metric: str
    reference: Any

    def predict(self, model: LoadedModel, inputs: np.ndarray) -> Any:
        """The model's results on the inputs; BackendError when its outputs do not fit the contract."""
        ...

    def agreement(self, predicted: Any, reference: Any) -> float:
        """0..1: how far predicted agrees with reference."""
        ...

    def min_agreement(self, hint_min: float) -> float:
        """What a reduced inference hint must reach (the classification hint gate's, or the task's own)."""
        ...


class Top1Scorer:
    """Top-1 class per sample against the golden labels (the FP32 model's top-1)."""

    metric = "top-1"

    def __init__(self, reference: np.ndarray) -> None:
        self.reference = reference

    def predict(self, model: LoadedModel, inputs: np.ndarray) -> np.ndarray:
        """Top-1 class per input."""
        return run_golden(model, inputs).argmax(axis=1)

    def agreement(self, predicted: np.ndarray, reference: np.ndarray) -> float:
        """Share of samples whose top-1 class equals the reference's."""
        if predicted.shape != reference.shape or predicted.size == 0:
            raise ValueError(f"top-1 of shape {predicted.shape} cannot be compared with {reference.shape}")
        return float(np.count_nonzero(predicted == reference)) / predicted.size

    def min_agreement(self, hint_min: float) -> float:
        """The hint gate's own minimum."""
        return hint_min


class DetectionScorer:
    """A detector's boxes per sample against the FP32 reference boxes, as F1."""

    metric = "detection F1"

    def __init__(self, manifest: Manifest, reference: Sequence[Detections], min_agreement: float) -> None:
        decoder = decoder_for(manifest)
        if not isinstance(decoder, DetectionDecoder):
            raise BackendError(f"{manifest.name} v{manifest.version} is not a detector")
        self.decoder = decoder
        self.reference = list(reference)
        self._min = min_agreement

    def predict(self, model: LoadedModel, inputs: np.ndarray) -> list[Detections]:
        """Detections per input in model-input pixels, at the manifest's thresholds."""
        raw = run_golden_outputs(model, inputs, self.decoder.runner(model))
        arrays = raw.values() if isinstance(raw, Mapping) else [raw]
        if not all(np.all(np.isfinite(a)) for a in arrays if np.asarray(a).dtype.kind == "f"):
            raise BackendError("outputs on the golden inputs hold NaN or infinity")
        try:
            return list(self.decoder.head.decode(as_outputs(raw)))
        except TaskContractError as exc:
            raise BackendError(str(exc)) from exc

    def agreement(self, predicted: Sequence[Detections], reference: Sequence[Detections]) -> float:
        """F1 of predicted boxes against the reference's (same class, IoU >= 0.5)."""
        return detection_agreement(reference, predicted).f1

    def min_agreement(self, hint_min: float) -> float:
        """The detection minimum (sync.detection_min_agreement), whatever the classification hint gate asks."""
        return self._min


class AnomalyVerdictScorer:
    """An anomaly model's verdict per golden window (score above the head's threshold) against the reference's."""

    metric = "anomaly verdict"

    def __init__(self, manifest: Manifest, reference: np.ndarray) -> None:
        head = manifest.head
        if not isinstance(head, AnomalyHeadSpec):
            raise BackendError(f"{manifest.name} v{manifest.version} is not an anomaly model")
        self.head = head
        self.reference = np.asarray(reference) == 1

    def predict(self, model: LoadedModel, inputs: np.ndarray) -> np.ndarray:
        """Anomalous or not, per window."""
        errors = run_golden(model, inputs).astype(np.float64)
        if errors.ndim != 2 or not np.all(np.isfinite(errors)):
            raise BackendError(f"anomaly outputs on the golden windows are not finite errors [N, C]: {errors.shape}")
        scores = errors.max(axis=1) if self.head.reduce == "max" else errors.mean(axis=1)
        return scores > self.head.threshold

    def agreement(self, predicted: np.ndarray, reference: np.ndarray) -> float:
        """Share of windows with the reference's verdict."""
        if predicted.shape != reference.shape or predicted.size == 0:
            raise ValueError(f"verdicts of shape {predicted.shape} cannot be compared with {reference.shape}")
        return float(np.count_nonzero(predicted == reference)) / predicted.size

    def min_agreement(self, hint_min: float) -> float:
        """The hint gate's own minimum."""
        return hint_min


def scorer_for(
    golden: GoldenSet | DetectionGoldenSet, manifest: Manifest, detection_min: float = DETECTION_MIN_AGREEMENT
) -> GoldenScorer:
    """The scorer of the golden set's task, with the reference the set carries."""
    if isinstance(golden, DetectionGoldenSet):
        return DetectionScorer(manifest, golden.detections(manifest.labels), detection_min)
    if manifest.task == "anomaly":
        return AnomalyVerdictScorer(manifest, golden.labels)
    return Top1Scorer(golden.labels)
