"""IoU and class-aware NMS in numpy give what the plain greedy definition gives."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tasks import box_iou, cxcywh_to_xyxy, nms


def test_box_iou_and_nms_by_hand() -> None:
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 100, 100]], dtype=np.float64)
    iou = box_iou(a, a)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 0] == 1.0 and iou[2, 2] == 0.0
    scores = np.array([0.5, 0.9, 0.1])
    assert nms(a, scores, 0.3).tolist() == [1, 2]  # box 0 overlaps box 1 by 1/3 > 0.3
    assert nms(a, scores, 0.4).tolist() == [1, 0, 2]
    assert nms(a, scores, 0.3, class_ids=np.array([0, 1, 0])).tolist() == [1, 0, 2]  # classes never suppress
    assert nms(a, scores, 0.4, max_keep=1).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def _greedy(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thr: float) -> list[int]:
    keep: list[int] = []
    for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i)):
        if all(classes[k] != classes[i] or _iou(boxes[k], boxes[i]) <= thr for k in keep):
            keep.append(i)
    return keep


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 40), st.integers(0, 2**32 - 1), st.sampled_from([0.3, 0.45, 0.7]))
def test_nms_is_the_greedy_definition(n: int, seed: int, thr: float) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 50, (n, 2)).astype(np.float64)
    boxes = np.concatenate([xy, xy + rng.integers(1, 30, (n, 2))], axis=1)
    scores = rng.integers(1, 10, n) / 10.0  # ties on purpose
    classes = rng.integers(0, 3, n)
    assert nms(boxes, scores, thr, class_ids=classes).tolist() == _greedy(boxes, scores, classes, thr)


def test_centre_boxes_become_corners() -> None:
    np.testing.assert_allclose(cxcywh_to_xyxy(np.array([[50.0, 40.0, 20.0, 10.0]])), [[40, 35, 60, 45]])


def test_nms_refuses_mismatched_arrays() -> None:
    with pytest.raises(ValueError, match="2 boxes for 3 scores"):
        nms(np.zeros((2, 4)), np.zeros(3), 0.5)
