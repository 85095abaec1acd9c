"""How far two detectors agree on the same frames: greedy same-class matching at an IoU, as precision/recall/F1.

Used where a reference exists: a variant or runtime against FP32 on the golden samples, and a shadow model
against the incumbent on live frames. The reference plays ground truth: recall is the share of its boxes found.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.tasks.boxes import box_iou
from shared.tasks.detection import Detection

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    """Matched pairs out of the reference's and the candidate's boxes; both empty counts as full agreement."""

    matched: int
    reference: int
    candidate: int

    @property
    def precision(self) -> float:
        """Share of the candidate's boxes the reference also has."""
        return self.matched / self.candidate if self.candidate else (1.0 if not self.reference else 0.0)

    @property
    def recall(self) -> float:
        """Share of the reference's boxes the candidate found."""
        return self.matched / self.reference if self.reference else (1.0 if not self.candidate else 0.0)

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall (2 * matched / (reference + candidate))."""
        total = self.reference + self.candidate
        return 2.0 * self.matched / total if total else 1.0

    def __add__(self, other: Agreement) -> Agreement:
        return Agreement(self.matched + other.matched, self.reference + other.reference,
                         self.candidate + other.candidate)


def match_detections(
    reference: Sequence[Detection], candidate: Sequence[Detection], iou: float = MATCH_IOU
) -> Agreement:
    """One frame: each candidate box, best score first, takes the unmatched same-class reference box of highest IoU."""
    if not reference or not candidate:
        return Agreement(0, len(reference), len(candidate))
    ious = box_iou(np.array([d.box for d in candidate]), np.array([d.box for d in reference]))
    same = np.array([d.class_id for d in candidate])[:, None] == np.array([d.class_id for d in reference])[None, :]
    ious = np.where(same & (ious >= iou), ious, -1.0)
    taken = np.zeros(len(reference), dtype=bool)
    matched = 0
    for i in np.argsort([-d.score for d in candidate], kind="stable"):
        row = np.where(taken, -1.0, ious[i])
        j = int(row.argmax())
        if row[j] >= 0.0:
            taken[j] = True
            matched += 1
    return Agreement(matched, len(reference), len(candidate))


def detection_agreement(
    reference: Sequence[Sequence[Detection]], candidate: Sequence[Sequence[Detection]], iou: float = MATCH_IOU
) -> Agreement:
    """Summed over frames (pairs of detections of the same frame); ValueError when the frame counts differ."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} reference frames but {len(candidate)} candidate frames")
    total = Agreement(0, 0, 0)
    for ref, cand in zip(reference, candidate, strict=True):
        total = total + match_detections(ref, cand, iou)
    return total
