"""Two detectors agree when their boxes match one to one: same class, IoU >= 0.5, best scores first."""

from __future__ import annotations

import pytest

from shared.tasks import Agreement, Detection, detection_agreement, match_detections


def det(label: str, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(label, {"a": 0, "b": 1}[label], score, box)


REF = [det("a", 0.9, (0, 0, 10, 10)), det("b", 0.8, (20, 20, 30, 30)), det("a", 0.7, (40, 40, 50, 50))]


def test_identical_detections_agree_fully() -> None:
    got = match_detections(REF, REF)
    assert (got.matched, got.precision, got.recall, got.f1) == (3, 1.0, 1.0, 1.0)


def test_a_missed_object_and_an_invented_one_cost_recall_and_precision() -> None:
    candidate = [REF[0], REF[1], det("a", 0.6, (80, 80, 90, 90))]  # misses the third, invents one
    got = match_detections(REF, candidate)
    assert (got.matched, got.reference, got.candidate) == (2, 3, 3)
    assert got.precision == pytest.approx(2 / 3) and got.recall == pytest.approx(2 / 3)
    assert got.f1 == pytest.approx(2 / 3)


def test_the_class_must_match_and_iou_must_reach_one_half() -> None:
    wrong_class = [det("b", 0.9, (0, 0, 10, 10))]
    assert match_detections(REF[:1], wrong_class).matched == 0
    exactly_half = [det("a", 0.9, (0, 0, 10, 5))]  # IoU 50/100 = 0.5: a match
    assert match_detections(REF[:1], exactly_half).matched == 1
    under_half = [det("a", 0.9, (0, 0, 10, 4.9))]
    assert match_detections(REF[:1], under_half).matched == 0


def test_one_reference_box_matches_one_candidate_greedily_by_score() -> None:
    ref = [det("a", 0.9, (0, 0, 10, 10)), det("a", 0.8, (0, 1, 10, 11))]
    # The best candidate takes the reference box it overlaps most; the second takes what is left.
    cand = [det("a", 0.5, (0, 0, 10, 10)), det("a", 0.95, (0, 1, 10, 11)), det("a", 0.4, (0, 0, 10, 10))]
    got = match_detections(ref, cand)
    assert (got.matched, got.reference, got.candidate) == (2, 2, 3)


def test_empty_frames_agree_and_frames_add_up() -> None:
    assert match_detections([], []).f1 == 1.0
    assert match_detections(REF, []).f1 == 0.0 and match_detections([], REF).precision == 0.0
    total = detection_agreement([REF, [], REF[:1]], [REF[:2], [], []])
    assert total == Agreement(matched=2, reference=4, candidate=2)
    assert total.f1 == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="2 reference frames but 1 candidate"):
        detection_agreement([REF, REF], [REF])

