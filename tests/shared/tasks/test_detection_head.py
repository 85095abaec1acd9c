"""Detection heads: raw YOLO, packed and in-graph decoded outputs become the same boxes in frame pixels."""

from __future__ import annotations

import numpy as np
import pytest

from shared.errors import TaskContractError
from shared.preprocessing import letterbox_geometry
from shared.task_contract import (
    DecodedDetectionHeadSpec,
    DetectionThresholds,
    PackedDetectionHeadSpec,
    YoloHeadSpec,
)
from shared.tasks import Detection, HeadContext, head_for, make_head
from tests.shared.manifest_factory import make_detection_manifest

LABELS = ("a", "b")
CTX = HeadContext(labels=LABELS, output_names=("output0",), input_hw=(100, 100))

# Anchors of a raw YOLO output as columns: cx, cy, w, h, score of a, score of b.
ANCHORS = np.array(
    [
        [50, 50, 20, 20, 0.9, 0.1],  # a 0.9 at (40, 40, 60, 60)
        [52, 50, 20, 20, 0.8, 0.0],  # a 0.8, IoU 0.818 with the first: suppressed
        [52, 50, 20, 20, 0.0, 0.7],  # b 0.7, same box but another class: kept
        [80, 80, 10, 10, 0.3, 0.2],  # a 0.3 alone: kept
        [10, 10, 4, 4, 0.2, 0.1],  # best score 0.2 is under 0.25: dropped
        [60, 50, 20, 20, 0.6, 0.0],  # a 0.6, IoU 1/3 with the first: kept at iou 0.45
    ],
    dtype=np.float32,
)
EXPECTED = [
    Detection("a", 0, 0.9, (40.0, 40.0, 60.0, 60.0)),
    Detection("b", 1, 0.7, (42.0, 40.0, 62.0, 60.0)),
    Detection("a", 0, 0.6, (50.0, 40.0, 70.0, 60.0)),
    Detection("a", 0, 0.3, (75.0, 75.0, 85.0, 85.0)),
]


def yolo_output() -> np.ndarray:
    """[1, 4 + 2, 6], the layout Ultralytics exports."""
    return ANCHORS.T[np.newaxis].copy()


def _same(got: tuple[Detection, ...], want: list[Detection]) -> None:
    assert [(d.label, d.class_id) for d in got] == [(d.label, d.class_id) for d in want]
    np.testing.assert_allclose([d.score for d in got], [d.score for d in want], rtol=1e-6)
    np.testing.assert_allclose([d.box for d in got], [d.box for d in want], atol=1e-4)


def test_yolo_output_is_decoded_thresholded_and_nmsed_per_class() -> None:
    head = make_head(YoloHeadSpec(format="yolo"), CTX)
    (got,) = head.decode({"output0": yolo_output()})
    _same(got, EXPECTED)


def test_outputs_may_come_as_a_list_in_manifest_order() -> None:
    head = make_head(YoloHeadSpec(format="yolo"), CTX)
    assert head.decode([yolo_output()]) == head.decode({"output0": yolo_output()})


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [
        (DetectionThresholds(score=0.5), EXPECTED[:3]),
        (DetectionThresholds(iou=0.3), [EXPECTED[0], EXPECTED[1], EXPECTED[3]]),
        (DetectionThresholds(max_detections=2), EXPECTED[:2]),
        (DetectionThresholds(score=0.0, iou=0.9), [  # nothing suppressed at IoU 0.9, everything over 0
            EXPECTED[0], Detection("a", 0, 0.8, (42, 40, 62, 60)), *EXPECTED[1:3], EXPECTED[3],
            Detection("a", 0, 0.2, (8, 8, 12, 12))]),
    ],
)
def test_device_thresholds_override_the_manifest_defaults(
    thresholds: DetectionThresholds, expected: list[Detection]
) -> None:
    head = make_head(YoloHeadSpec(format="yolo", thresholds=DetectionThresholds(score=0.99)), CTX, thresholds)
    _same(head.decode([yolo_output()])[0], expected)


def test_manifest_thresholds_are_the_default() -> None:
    head = make_head(YoloHeadSpec(format="yolo", thresholds=DetectionThresholds(score=0.65)), CTX)
    _same(head.decode([yolo_output()])[0], EXPECTED[:2])


def test_boxes_come_back_in_frame_pixels_through_the_letterbox() -> None:
    head = make_head(YoloHeadSpec(format="yolo"), CTX)
    geometry = letterbox_geometry((50, 100), (100, 100))  # a 2:1 frame: 25 rows of padding on top
    (got,) = head.decode([yolo_output()], geometry)
    assert got[0].box == pytest.approx((40.0, 15.0, 60.0, 35.0))
    assert got[3].box == pytest.approx((75.0, 50.0, 85.0, 50.0))  # reaches into the padding: clipped
    assert got[0].bottom_centre == pytest.approx((50.0, 35.0))


def test_normalized_yolo_boxes_are_scaled_to_input_pixels() -> None:
    raw = yolo_output()
    raw[0, :4] /= 100.0
    head = make_head(YoloHeadSpec(format="yolo", box_space="normalized"), CTX)
    _same(head.decode([raw])[0], EXPECTED)


def test_a_batch_gives_one_result_per_image_with_its_own_geometry() -> None:
    head = make_head(YoloHeadSpec(format="yolo"), CTX)
    empty = np.zeros((1, 6, 6), dtype=np.float32)
    batch = np.concatenate([yolo_output(), empty])
    g = letterbox_geometry((100, 100), (100, 100))
    first, second = head.decode([batch], [g, None])
    _same(first, EXPECTED)
    assert second == ()


def test_yolo_output_that_does_not_fit_the_labels_is_refused_in_one_line() -> None:
    head = make_head(YoloHeadSpec(format="yolo"), HeadContext(("a", "b", "c"), ("output0",), (100, 100)))
    with pytest.raises(TaskContractError, match=r"expected \[batch, 4 \+ 3 labels = 7, anchors\]"):
        head.decode([yolo_output()])


def test_non_finite_boxes_are_refused() -> None:
    raw = yolo_output()
    raw[0, 0, 0] = np.nan
    with pytest.raises(TaskContractError, match="NaN"):
        make_head(YoloHeadSpec(format="yolo"), CTX).decode([raw])


def _decoded_outputs() -> dict[str, np.ndarray]:
    boxes = np.array([[[40, 40, 60, 60], [50, 40, 70, 60], [75, 75, 85, 85], [0, 0, 0, 0]]], dtype=np.float32)
    scores = np.array([[0.9, 0.6, 0.3, 0.0]], dtype=np.float32)
    class_ids = np.array([[0, 1, 0, -1]], dtype=np.int64)
    return {"boxes": boxes, "scores": scores, "class_ids": class_ids}


def test_in_graph_decoded_outputs_are_thresholded_and_padding_dropped() -> None:
    ctx = HeadContext(LABELS, ("boxes", "scores", "class_ids"), (100, 100))
    head = make_head(DecodedDetectionHeadSpec(format="decoded"), ctx)
    (got,) = head.decode(_decoded_outputs())
    _same(got, [EXPECTED[0], Detection("b", 1, 0.6, (50, 40, 70, 60)), EXPECTED[3]])
    strict = make_head(DecodedDetectionHeadSpec(format="decoded"), ctx, DetectionThresholds(score=0.5))
    assert [d.score for d in strict.decode(_decoded_outputs())[0]] == pytest.approx([0.9, 0.6])


def test_decoded_outputs_honour_a_valid_count_cxcywh_and_float_class_ids() -> None:
    outputs = _decoded_outputs()
    outputs["boxes"] = np.array([[[50, 50, 20, 20], [60, 50, 20, 20], [80, 80, 10, 10], [0, 0, 0, 0]]], np.float32)
    outputs["class_ids"] = outputs["class_ids"].astype(np.float32)
    outputs["scores"] = outputs["scores"][..., np.newaxis]  # [B, K, 1], as some exports give them
    outputs["num_dets"] = np.array([[2]], dtype=np.int32)
    spec = DecodedDetectionHeadSpec(format="decoded", box_format="cxcywh", num_detections="num_dets")
    head = make_head(spec, HeadContext(LABELS, ("boxes", "scores", "class_ids", "num_dets"), (100, 100)))
    _same(head.decode(outputs)[0], [EXPECTED[0], Detection("b", 1, 0.6, (50, 40, 70, 60))])


def test_decoded_outputs_without_nms_in_the_graph_get_it_from_the_head() -> None:
    outputs = _decoded_outputs()
    outputs["class_ids"][0, 1] = 0  # the 0.6 box now overlaps the 0.9 box of its class by IoU 1/3
    ctx = HeadContext(LABELS, ("boxes", "scores", "class_ids"), (100, 100))
    spec = DecodedDetectionHeadSpec(format="decoded", nms_in_graph=False)
    assert len(make_head(spec, ctx).decode(outputs)[0]) == 3
    assert len(make_head(spec, ctx, DetectionThresholds(iou=0.3)).decode(outputs)[0]) == 2


def test_class_ids_beyond_the_labels_are_refused() -> None:
    outputs = _decoded_outputs()
    outputs["class_ids"][0, 0] = 7
    head = make_head(DecodedDetectionHeadSpec(format="decoded"), HeadContext(LABELS, ("boxes",), (100, 100)))
    with pytest.raises(TaskContractError, match="class id 7 but the manifest lists 2 labels"):
        head.decode(outputs)


def test_packed_outputs_decode_like_ultralytics_end2end() -> None:
    packed = np.array([[[40, 40, 60, 60, 0.9, 0], [42, 40, 62, 60, 0.7, 1], [0, 0, 1, 1, 0.1, 0]]], np.float32)
    head = make_head(PackedDetectionHeadSpec(format="packed"), CTX)
    _same(head.decode([packed])[0], EXPECTED[:2])


def test_head_for_reads_the_manifest() -> None:
    manifest = make_detection_manifest("yolo")
    head = head_for(manifest)
    assert (head.task, head.format, head.context.input_hw) == ("detection", "yolo", (640, 640))
    assert head.context.labels == ("person", "car", "dog")
    raw = np.zeros((1, 7, 8400), dtype=np.float32)
    raw[0, :4, 0] = [320, 320, 64, 64]
    raw[0, 5, 0] = 0.8
    geometry = letterbox_geometry((480, 640), (640, 640))
    (got,) = head.decode({"output0": raw}, geometry)
    _same(got, [Detection("car", 1, 0.8, (288.0, 208.0, 352.0, 272.0))])


def test_quality_figures_speak_in_objects() -> None:
    head = make_head(YoloHeadSpec(format="yolo"), CTX)
    frames = head.decode([np.concatenate([yolo_output(), np.zeros((1, 6, 6), np.float32)])])
    q = head.quality(frames)
    assert (q.frames, q.objects_per_frame, q.class_counts) == (2, 2.0, {"a": 3, "b": 1})
    assert q.mean_score == pytest.approx((0.9 + 0.7 + 0.6 + 0.3) / 4)
    assert head.quality([]).mean_score is None
