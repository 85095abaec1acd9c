"""mAP plumbing and the gate: pycocotools scores perfect and broken detections as expected, and a variant made
deliberately bad is rejected with its figures while one within budget passes."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.detection.coco_eval import MapScores, coco_map
from cloud.detection.gates import map_gate

GT_BOXES = [np.array([[10, 10, 40, 30], [50, 50, 90, 100]], np.float32), np.array([[0, 0, 20, 20]], np.float32)]
GT_CLASSES = [np.array([0, 1]), np.array([2])]


def _detections(shift: float = 0.0, swap_class: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.zeros((2, 3, 4), np.float32)
    scores = np.zeros((2, 3), np.float32)
    classes = np.zeros((2, 3), np.int64)
    for i, (b, c) in enumerate(zip(GT_BOXES, GT_CLASSES, strict=True)):
        boxes[i, : len(b)] = b + shift
        scores[i, : len(b)] = 0.9
        classes[i, : len(b)] = (c + 1) % 3 if swap_class else c
    return boxes, scores, classes


def test_perfect_detections_score_one_and_broken_ones_less() -> None:
    perfect = coco_map(GT_BOXES, GT_CLASSES, *_detections(), num_classes=3)
    assert perfect.map50 == pytest.approx(1.0) and perfect.map50_95 == pytest.approx(1.0)
    shifted = coco_map(GT_BOXES, GT_CLASSES, *_detections(shift=2.0), num_classes=3)
    assert shifted.map50 == pytest.approx(1.0) and shifted.map50_95 < 0.9
    wrong = coco_map(GT_BOXES, GT_CLASSES, *_detections(swap_class=True), num_classes=3)
    assert wrong.map50 == 0.0


def test_a_variant_over_budget_is_rejected_with_its_figures_and_one_within_passes() -> None:
    reference = coco_map(GT_BOXES, GT_CLASSES, *_detections(), num_classes=3)
    bad = coco_map(GT_BOXES, GT_CLASSES, *_detections(shift=2.0), num_classes=3)
    gate = map_gate("int8", bad, reference, budget=0.015, agreement=1.0)
    assert not gate.passed
    assert gate.reason.startswith("mAP drop over budget") and "budget 1.50" in gate.reason
    ok = map_gate("int8", MapScores(map50=1.0, map50_95=reference.map50_95 - 0.015), reference, 0.015, 1.0)
    assert ok.passed
