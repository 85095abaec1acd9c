"""Per-zone counts for telemetry and the detection quality figures a rollout gate reads."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edge.detection.counts import zone_counts
from edge.detection.quality import OBJECTS_PER_FRAME, SCORE_MEAN, DetectionQualityWindow
from shared.tasks.detection import Detection


@dataclass(frozen=True)
class Obj:
    label: str
    current_zones: tuple[str, ...]


def test_zone_counts_per_zone_and_per_label_with_empty_zones_at_zero() -> None:
    objects = [Obj("person", ("door", "yard")), Obj("person", ("yard",)), Obj("car", ("yard",)), Obj("car", ())]
    totals, per_label = zone_counts(objects, ["door", "yard", "street"])
    assert totals == {"door": 1, "yard": 3, "street": 0}
    assert per_label == {"door/person": 1, "yard/person": 2, "yard/car": 1}


def test_zone_counts_ignore_zones_no_longer_configured() -> None:
    assert zone_counts([Obj("car", ("gone",))], ["yard"]) == ({"yard": 0}, {})


def test_quality_window_figures_and_class_mix_cover_one_window() -> None:
    w = DetectionQualityWindow()
    w.add([Detection("person", 0, 0.9, (0, 0, 1, 1)), Detection("car", 1, 0.5, (0, 0, 1, 1))])
    w.add([])
    w.add([Detection("person", 0, 0.7, (0, 0, 1, 1))])
    first = w.metrics()
    assert first["det_frames_window"] == 3
    assert first[OBJECTS_PER_FRAME] == pytest.approx(1.0)
    assert first[SCORE_MEAN] == pytest.approx(0.7)
    assert w.class_counts() == {"person": 2, "car": 1}
    assert w.metrics() == {"det_frames_window": 0.0}
    assert w.class_counts() == {}


def test_frames_without_objects_report_zero_objects_per_frame_and_no_mean_score() -> None:
    w = DetectionQualityWindow()
    w.add([])
    assert w.metrics() == {"det_frames_window": 1.0, OBJECTS_PER_FRAME: 0.0}


def test_the_window_reports_the_figures_the_cloud_computes_for_the_same_frames() -> None:
    from shared.tasks.detection import detection_quality

    frames = [
        (Detection("person", 0, 0.9, (0, 0, 1, 1)), Detection("car", 1, 0.4, (0, 0, 1, 1))),
        (),
        (Detection("car", 1, 0.8, (0, 0, 1, 1)),),
    ]
    w = DetectionQualityWindow()
    for frame in frames:
        w.add(frame)
    device, cloud = w.metrics(), detection_quality(frames)
    assert device["det_frames_window"] == cloud.frames
    assert device[SCORE_MEAN] == pytest.approx(cloud.mean_score)
    assert device[OBJECTS_PER_FRAME] == pytest.approx(cloud.objects_per_frame)
    assert w.class_counts() == cloud.class_counts


def test_non_finite_scores_do_not_poison_the_window() -> None:
    w = DetectionQualityWindow()
    w.add([Detection("person", 0, float("nan"), (0, 0, 1, 1)), Detection("car", 1, 0.6, (0, 0, 1, 1))])
    assert w.metrics()[SCORE_MEAN] == pytest.approx(0.6)
    assert w.class_counts() == {"car": 1}
