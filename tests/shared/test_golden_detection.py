"""A detector's golden.npz: the FP32 reference detections round-trip exactly and gate a variant by agreement."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from shared.golden import (
    GOLDEN_FILE,
    DetectionGoldenSet,
    detection_golden_arrays,
    golden_bytes,
    read_detection_golden,
    read_golden,
    read_task_golden,
)
from shared.task_contract import YoloHeadSpec
from shared.tasks import Detection, HeadContext, make_head

LABELS = ("a", "b")
RNG = np.random.default_rng(5)
# Scores exact in float32, as the file stores them.
REFERENCE = [
    (Detection("a", 0, 0.875, (40.0, 40.0, 60.0, 60.0)), Detection("b", 1, 0.75, (42.0, 40.0, 62.0, 60.0))),
    (),
    (Detection("b", 1, 0.5, (1.0, 2.0, 3.0, 4.0)),),
]


def _written(tmp_path: Path) -> Path:
    inputs = RNG.normal(size=(3, 3, 8, 8))
    path = tmp_path / GOLDEN_FILE
    path.write_bytes(golden_bytes(detection_golden_arrays(inputs, REFERENCE)))
    return path


def test_reference_detections_round_trip_exactly(tmp_path: Path) -> None:
    got = read_detection_golden(_written(tmp_path), count=3, classes=2)
    assert got.inputs.dtype == np.float32 and got.inputs.shape == (3, 3, 8, 8)
    assert got.boxes.shape == (3, 2, 4) and got.counts.tolist() == [2, 0, 1]
    assert got.detections(LABELS) == [tuple(f) for f in REFERENCE]
    with np.load(tmp_path / GOLDEN_FILE, allow_pickle=False) as z:
        assert sorted(z.files) == ["boxes", "class_ids", "counts", "inputs", "scores"]


def test_a_variant_is_gated_by_its_agreement_with_the_reference(tmp_path: Path) -> None:
    golden = read_detection_golden(_written(tmp_path), count=3, classes=2)
    assert golden.agreement(REFERENCE, LABELS).f1 == 1.0
    missing_one = [REFERENCE[0][:1], (), REFERENCE[2]]
    assert golden.agreement(missing_one, LABELS).recall == pytest.approx(2 / 3)


def test_the_head_output_of_a_model_is_what_gets_stored(tmp_path: Path) -> None:
    raw = np.zeros((1, 6, 2), dtype=np.float32)
    raw[0, :, 0] = [50, 50, 20, 20, 0.9, 0.1]
    raw[0, :, 1] = [10, 10, 4, 4, 0.0, 0.6]
    head = make_head(YoloHeadSpec(format="yolo"), HeadContext(LABELS, ("output0",), (100, 100)))
    frames = head.decode([raw])
    golden = detection_golden_arrays(np.zeros((1, 3, 100, 100)), frames)
    assert golden.detections(LABELS) == frames


def test_each_task_reads_its_own_form(tmp_path: Path) -> None:
    path = _written(tmp_path)
    assert isinstance(read_task_golden(path, task="detection", count=3, classes=2), DetectionGoldenSet)
    with pytest.raises(ValueError, match=r"lack arrays \['labels'\]"):
        read_task_golden(path, task="classification", count=3, classes=2)
    with pytest.raises(ValueError, match=r"lack arrays \['labels'\]"):  # anomaly: the classification form
        read_task_golden(path, task="anomaly", count=3, classes=2)
    with pytest.raises(ValueError, match="no form for task 'segmentation'"):
        read_task_golden(path, task="segmentation", count=3, classes=2)
    with pytest.raises(ValueError, match="lack arrays"):
        read_golden(path, count=3, classes=2)


def _arrays(**change: np.ndarray) -> dict[str, np.ndarray]:
    base = {
        "inputs": np.zeros((2, 1, 4, 4), np.float32),
        "boxes": np.zeros((2, 1, 4), np.float32),
        "scores": np.ones((2, 1), np.float32),
        "class_ids": np.zeros((2, 1), np.int64),
        "counts": np.array([1, 0], np.int64),
    }
    base.update(change)
    return base


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"inputs": np.zeros((3, 1, 4, 4), np.float32)}, "expected float32 with 2 samples"),
        ({"boxes": np.zeros((2, 1, 5), np.float32)}, r"expected float32 \(2, K, 4\)"),
        ({"scores": np.ones((2, 2), np.float32)}, r"scores .* expected float32 \(2, 1\)"),
        ({"class_ids": np.zeros((2, 1), np.float32)}, r"class_ids .* expected int64"),
        ({"counts": np.array([2, 0], np.int64)}, "expected 2 integers 0..1"),
        ({"class_ids": np.full((2, 1), 5, np.int64)}, "outside the 2 classes"),
        ({"boxes": np.full((2, 1, 4), np.nan, np.float32)}, "NaN"),
    ],
)
def test_unfit_detection_files_are_refused_with_the_reason(
    tmp_path: Path, change: dict[str, np.ndarray], message: str
) -> None:
    buf = io.BytesIO()
    np.savez(buf, **_arrays(**change))  # type: ignore[arg-type]
    (tmp_path / GOLDEN_FILE).write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match=message):
        read_detection_golden(tmp_path / GOLDEN_FILE, count=2, classes=2)


def test_padding_rows_beyond_the_count_are_not_checked_as_classes(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, **_arrays(class_ids=np.array([[0], [-1]], np.int64)))  # type: ignore[arg-type]
    (tmp_path / GOLDEN_FILE).write_bytes(buf.getvalue())
    assert read_detection_golden(tmp_path / GOLDEN_FILE, count=2, classes=2).detections(LABELS)[1] == ()


def test_writer_refuses_mismatched_sets() -> None:
    with pytest.raises(ValueError, match="2 inputs for 3 detection results"):
        detection_golden_arrays(np.zeros((2, 1, 4, 4)), REFERENCE)
