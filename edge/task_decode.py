"""A served model's output to its frame's result, through the manifest's task head; chosen once per model.

The frame loop never asks which task a model serves: it calls its decoder, whose result feeds the result sink of
the same task (edge.result_sinks) and the shadow check's comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.backends.base import LoadedModel
from edge.errors import BackendError
from shared.errors import TaskContractError
from shared.manifest import Manifest, Preprocess
from shared.preprocessing import FrameGeometry, frame_geometry
from shared.tasks import DetectionHead, Detections, Outputs, Prediction, classify, detection_agreement, head_for
from shared.tasks.anomaly import AnomalyHead, AnomalyScore

# What a model returns for a batch: its one output, or every output by name (detectors decoded in the graph).
RawOutput = np.ndarray | Mapping[str, np.ndarray]
Runner = Callable[[np.ndarray], RawOutput]


def as_outputs(raw: RawOutput) -> Outputs:
    """A model's raw result as a task head reads it (by name, or one output in a list)."""
    return raw if isinstance(raw, Mapping) else [np.asarray(raw)]

def runner_for(model: LoadedModel, outputs: int, what: str, *, every: bool) -> Runner:
    """model.run (its first output), or run_outputs (every output by name) where the head needs several."""
    if not every:
        return model.run
    run_outputs: Runner | None = getattr(model, "run_outputs", None)
    if run_outputs is None:
        raise BackendError(f"the {model.backend} runtime returns one output per model; this {what} has {outputs}")
    return run_outputs


@contextmanager
def contract_errors(file: str | None = None) -> Iterator[None]:
    """A task head's TaskContractError as the BackendError the loop and the install path handle (naming the file)."""
    try:
        yield
    except TaskContractError as exc:
        raise BackendError(str(exc) if file is None else f"{file}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Decoded:
    """One frame's result in its task's terms: a classification, the detected objects, or a window's anomaly score."""

    prediction: Prediction | None = None
    detections: Detections | None = None
    anomaly: AnomalyScore | None = None


class FrameDecoder(Protocol):
    """Decodes one frame's output and compares two models' results on one frame (the shadow check)."""

    task: str
    # Whether results keep a reference to the frame's image (detections: snapshots of objects).
    keeps_image: bool

    def runner(self, model: LoadedModel) -> Runner:
        """How to run the model for this task: its first output, or all of them; BackendError if it cannot."""
        ...

    def decode(self, output: RawOutput, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The result of one frame; BackendError when the output does not fit the manifest's contract."""
        ...

    def check(self, output: RawOutput, file: str) -> None:
        """A warm-up output fits the contract; BackendError naming the file otherwise."""
        ...

    def agreement(self, reference: Decoded, candidate: Decoded) -> tuple[float, float]:
        """(agreeing, compared) between the previous model's result (reference) and the served one's, one frame."""
        ...


class ClassificationDecoder:
    """Logits (or probabilities) [1, classes] to the top-k labels."""

    task = "classification"
    keeps_image = False

    def __init__(self, labels: tuple[str, ...], probabilities: bool = False) -> None:
        self.labels = labels
        self.probabilities = probabilities

    def runner(self, model: LoadedModel) -> Runner:
        """The model's one output."""
        return model.run

    def decode(self, output: RawOutput, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The frame's top-1 and top-k."""
        if isinstance(output, Mapping):
            raise BackendError("a classifier returns one output")
        with contract_errors():
            return Decoded(prediction=classify(output, self.labels, top_k, probabilities=self.probabilities))

    def check(self, output: RawOutput, file: str) -> None:
        """One value per label."""
        if isinstance(output, Mapping):
            raise BackendError(f"{file}: a classifier returns one output")
        out = np.asarray(output)
        if out.size != len(self.labels):
            raise BackendError(
                f"{file} returns {out.size} values per frame, the manifest lists {len(self.labels)} labels"
            )

    def agreement(self, reference: Decoded, candidate: Decoded) -> tuple[float, float]:
        """1 of 1 when the top-1 labels are equal."""
        ref, cand = reference.prediction, candidate.prediction
        same = ref is not None and cand is not None and ref.label == cand.label
        return (1.0 if same else 0.0), 1.0


class DetectionDecoder:
    """A detection head's output to boxes in frame pixels (letterbox or stretch undone per frame size)."""

    task = "detection"
    keeps_image = True

    def __init__(self, head: DetectionHead, recipe: Preprocess, outputs: int = 1) -> None:
        self.head = head
        self.recipe = recipe
        # Outputs the manifest lists: more than one (boxes, scores, class ids) needs every output by name.
        self.outputs = outputs
        self._geometry: FrameGeometry | None = None

    def runner(self, model: LoadedModel) -> Runner:
        """The first output, or every output by name where the model has several."""
        return runner_for(model, self.outputs, "detector", every=self.outputs > 1)

    def decode(self, output: RawOutput, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The frame's detections, best score first."""
        geometry = None if frame_hw is None else self._geometry_for(frame_hw)
        with contract_errors():
            return Decoded(detections=self.head.decode(as_outputs(output), geometry)[0])

    def check(self, output: RawOutput, file: str) -> None:
        """The output decodes under the manifest's contract (shape, labels)."""
        with contract_errors(file):
            self.head.decode(as_outputs(output))

    def agreement(self, reference: Decoded, candidate: Decoded) -> tuple[float, float]:
        """2 x matched boxes out of both models' boxes (IoU >= 0.5, same class): summed over frames, that is F1."""
        a = detection_agreement([reference.detections or ()], [candidate.detections or ()])
        return 2.0 * a.matched, float(a.reference + a.candidate)

    def _geometry_for(self, frame_hw: tuple[int, int]) -> FrameGeometry:
        g = self._geometry
        if g is None or g.frame_hw != tuple(frame_hw):
            g = self._geometry = frame_geometry(self.recipe, (int(frame_hw[0]), int(frame_hw[1])))
        return g


class AnomalyDecoder:
    """Per-channel reconstruction errors [1, C] of one sensor window to its score, verdict and worst channels."""

    task = "anomaly"
    keeps_image = False

    def __init__(self, head: AnomalyHead, outputs: int = 1) -> None:
        self.head = head
        self.outputs = outputs

    def runner(self, model: LoadedModel) -> Runner:
        """The first output, or every output by name where the head names one of several."""
        return runner_for(model, self.outputs, "anomaly model",
                          every=self.outputs > 1 and self.head.spec.output is not None)

    def decode(self, output: RawOutput, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The window's score against the manifest head's threshold (alerts apply the served one)."""
        with contract_errors():
            return Decoded(anomaly=self.head.decode(as_outputs(output))[0])

    def check(self, output: RawOutput, file: str) -> None:
        """The output is finite per-channel errors [windows, channels]."""
        with contract_errors(file):
            self.head.decode(as_outputs(output))

    def agreement(self, reference: Decoded, candidate: Decoded) -> tuple[float, float]:
        """1 of 1 when both models give the window the same verdict."""
        ref, cand = reference.anomaly, candidate.anomaly
        same = ref is not None and cand is not None and ref.anomalous == cand.anomalous
        return (1.0 if same else 0.0), 1.0


def decoder_for(manifest: Manifest) -> FrameDecoder:
    """The decoder of the manifest's task head; BackendError for a task or format this agent does not serve."""
    try:
        head = head_for(manifest)
    except TaskContractError as exc:
        raise BackendError(f"{manifest.name} v{manifest.version}: {exc}") from exc
    if isinstance(head, DetectionHead):
        return DetectionDecoder(head, manifest.preprocess, len(manifest.outputs))
    if isinstance(head, AnomalyHead):
        return AnomalyDecoder(head, len(manifest.outputs))
    if head.task == "classification":
        return ClassificationDecoder(tuple(manifest.labels), probabilities=head.format == "probabilities")
    raise BackendError(
        f"{manifest.name} v{manifest.version} is a {head.task} model; "
        "this agent serves classification, detection and anomaly"
    )
