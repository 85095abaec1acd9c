"""A served model's output to its frame's result, through the manifest's task head; chosen once per model.

The frame loop never asks which task a model serves: it calls its decoder, whose result feeds the result sink of
the same task (edge.result_sinks) and the shadow check's comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.errors import BackendError
from shared.errors import TaskContractError
from shared.manifest import Manifest, Preprocess
from shared.preprocessing import FrameGeometry, frame_geometry
from shared.tasks import DetectionHead, Detections, Prediction, classify, detection_agreement, head_for


@dataclass(frozen=True, slots=True)
class Decoded:
    """One frame's result in its task's terms: a classification, or the detected objects."""

    prediction: Prediction | None = None
    detections: Detections | None = None


class FrameDecoder(Protocol):
    """Decodes one frame's output and compares two models' results on one frame (the shadow check)."""

    task: str
    # Whether results keep a reference to the frame's image (detections: snapshots of objects).
    keeps_image: bool

    def decode(self, output: np.ndarray, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The result of one frame; BackendError when the output does not fit the manifest's contract."""
        ...

    def check(self, output: np.ndarray, file: str) -> None:
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

    def decode(self, output: np.ndarray, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The frame's top-1 and top-k."""
        try:
            return Decoded(prediction=classify(output, self.labels, top_k, probabilities=self.probabilities))
        except TaskContractError as exc:
            raise BackendError(str(exc)) from exc

    def check(self, output: np.ndarray, file: str) -> None:
        """One value per label."""
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

    def __init__(self, head: DetectionHead, recipe: Preprocess) -> None:
        self.head = head
        self.recipe = recipe
        self._geometry: FrameGeometry | None = None

    def decode(self, output: np.ndarray, frame_hw: tuple[int, int] | None, top_k: int) -> Decoded:
        """The frame's detections, best score first."""
        geometry = None if frame_hw is None else self._geometry_for(frame_hw)
        try:
            return Decoded(detections=self.head.decode([np.asarray(output)], geometry)[0])
        except TaskContractError as exc:
            raise BackendError(str(exc)) from exc

    def check(self, output: np.ndarray, file: str) -> None:
        """The output decodes under the manifest's contract (shape, labels)."""
        try:
            self.head.decode([np.asarray(output)])
        except TaskContractError as exc:
            raise BackendError(f"{file}: {exc}") from exc

    def agreement(self, reference: Decoded, candidate: Decoded) -> tuple[float, float]:
        """2 x matched boxes out of both models' boxes (IoU >= 0.5, same class): summed over frames, that is F1."""
        a = detection_agreement([reference.detections or ()], [candidate.detections or ()])
        return 2.0 * a.matched, float(a.reference + a.candidate)

    def _geometry_for(self, frame_hw: tuple[int, int]) -> FrameGeometry:
        g = self._geometry
        if g is None or g.frame_hw != tuple(frame_hw):
            g = self._geometry = frame_geometry(self.recipe, (int(frame_hw[0]), int(frame_hw[1])))
        return g


def decoder_for(manifest: Manifest) -> FrameDecoder:
    """The decoder of the manifest's task head; BackendError for a task or format this agent does not serve."""
    try:
        head = head_for(manifest)
    except TaskContractError as exc:
        raise BackendError(f"{manifest.name} v{manifest.version}: {exc}") from exc
    if isinstance(head, DetectionHead):
        return DetectionDecoder(head, manifest.preprocess)
    if head.task == "classification":
        return ClassificationDecoder(tuple(manifest.labels), probabilities=head.format == "probabilities")
    raise BackendError(
        f"{manifest.name} v{manifest.version} is a {head.task} model; this agent serves classification and detection"
    )
