"""Golden samples: which test rows are chosen, and a golden.npz any device can read without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cloud.errors import ExportError
from cloud.golden import golden_indices, write_detection_golden, write_golden
from shared.golden import read_detection_golden
from shared.integrity import sha256_file
from shared.tasks import Detection


def test_every_predicted_class_comes_before_any_repeats() -> None:
    logits = np.array(
        [[5, 0, 0], [9, 0, 0], [0, 4, 0], [7, 0, 0], [0, 0, 3], [0, 8, 0]], dtype=np.float32
    )  # predicted: 0 0 1 0 2 1
    idx = golden_indices(logits, 4)
    assert sorted(logits[idx[:3]].argmax(1).tolist()) == [0, 1, 2]
    assert len(set(idx.tolist())) == 4


def test_clearest_margin_first_within_a_class() -> None:
    logits = np.array([[1.0, 0.9], [5.0, 0.0], [3.0, 0.0]], dtype=np.float32)  # all predicted 0
    assert golden_indices(logits, 2).tolist() == [1, 2]


def test_count_is_bounded_by_the_test_split() -> None:
    logits = np.eye(3, dtype=np.float32)
    assert len(golden_indices(logits, 16)) == 3


def test_no_logits_is_an_error() -> None:
    with pytest.raises(ExportError):
        golden_indices(np.zeros((0, 3), np.float32), 4)


def test_npz_loads_without_pickle_and_matches_what_was_written(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(5, 1, 4, 4)).astype(np.float64)  # not float32 on purpose: the file must be
    logits = rng.normal(size=(5, 3)).astype(np.float32)
    golden = write_golden(tmp_path / "golden.npz", inputs, logits)
    assert (golden.file, golden.count) == ("golden.npz", 5)
    assert golden.sha256 == sha256_file(tmp_path / "golden.npz")
    assert golden.bytes == (tmp_path / "golden.npz").stat().st_size
    with np.load(tmp_path / "golden.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["inputs", "labels", "logits"]
        assert z["inputs"].dtype == np.float32 and z["inputs"].shape == (5, 1, 4, 4)
        assert z["logits"].dtype == np.float32
        assert z["labels"].dtype == np.int64
        np.testing.assert_array_equal(z["labels"], logits.argmax(1))
        np.testing.assert_allclose(z["inputs"], inputs.astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.npz"]


def test_mismatched_arrays_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="3 inputs for 2 logit rows"):
        write_golden(tmp_path / "golden.npz", np.zeros((3, 1, 2, 2)), np.zeros((2, 3)))
    assert list(tmp_path.iterdir()) == []


def test_a_detectors_golden_file_holds_the_reference_detections(tmp_path: Path) -> None:
    frames = [(Detection("car", 1, 0.5, (1.0, 2.0, 30.0, 40.0)),), ()]
    golden = write_detection_golden(tmp_path / "golden.npz", np.zeros((2, 3, 8, 8)), frames)
    assert (golden.count, golden.sha256) == (2, sha256_file(tmp_path / "golden.npz"))
    got = read_detection_golden(tmp_path / "golden.npz", count=2, classes=2)
    assert got.detections(["person", "car"]) == frames
    with pytest.raises(ExportError, match="golden samples: 2 inputs for 1 detection results"):
        write_detection_golden(tmp_path / "other.npz", np.zeros((2, 3, 8, 8)), frames[:1])
    assert not (tmp_path / "other.npz").exists()
