"""golden.npz: what the trainer writes is exactly what a device reads, and nothing else gets through."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from cloud.golden import write_golden
from edge.golden_check import load_golden
from shared.golden import GOLDEN_FILE, golden_arrays, golden_bytes, read_golden
from tests.shared.manifest_factory import make_manifest

RNG = np.random.default_rng(11)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    path.write_bytes(buf.getvalue())
    return path


def test_round_trip_keeps_every_array_exactly(tmp_path: Path) -> None:
    inputs = RNG.normal(size=(6, 3, 4, 4)).astype(np.float32)
    logits = RNG.normal(size=(6, 5)).astype(np.float32)
    (tmp_path / GOLDEN_FILE).write_bytes(golden_bytes(golden_arrays(inputs, logits)))
    got = read_golden(tmp_path / GOLDEN_FILE, count=6, classes=5)
    np.testing.assert_array_equal(got.inputs, inputs)
    np.testing.assert_array_equal(got.labels, logits.argmax(1))
    assert got.labels.dtype == np.int64
    assert got.logits is not None
    np.testing.assert_array_equal(got.logits, logits)


def test_the_trainers_file_passes_the_devices_check(tmp_path: Path) -> None:
    inputs = RNG.normal(size=(4, 1, 8, 8))
    logits = RNG.normal(size=(4, 10)).astype(np.float32)
    golden = write_golden(tmp_path / GOLDEN_FILE, inputs, logits)
    manifest = make_manifest().model_copy(update={"golden": golden})
    assert len(manifest.labels) == 10
    got = load_golden(tmp_path / GOLDEN_FILE, manifest)
    np.testing.assert_array_equal(got.inputs, inputs.astype(np.float32))


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"inputs": np.zeros((3, 1, 2, 2), np.float64), "labels": np.zeros(3, np.int64)}, "expected float32 with 3"),
        ({"inputs": np.zeros((2, 1, 2, 2), np.float32), "labels": np.zeros(2, np.int64)}, "expected float32 with 3"),
        ({"inputs": np.zeros((3, 1, 2, 2), np.float32), "labels": np.zeros(3, np.float32)}, "expected 3 integers"),
        ({"inputs": np.zeros((3, 1, 2, 2), np.float32), "labels": np.full(3, 4)}, "outside the 4 classes"),
        ({"inputs": np.zeros((3, 1, 2, 2), np.float32), "labels": np.zeros(3, np.int64),
          "logits": np.zeros((3, 5), np.float32)}, r"expected float \(3, 4\)"),
        ({"inputs": np.zeros((3, 1, 2, 2), np.float32)}, r"lack arrays \['labels'\]"),
        ({"inputs": np.array([{"x": 1}] * 3, dtype=object), "labels": np.zeros(3, np.int64)}, "cannot be read safely"),
    ],
)
def test_unfit_files_are_refused_with_the_reason(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = _write(tmp_path / GOLDEN_FILE, **arrays)
    with pytest.raises(ValueError, match=message):
        read_golden(path, count=3, classes=4)


def test_a_file_that_is_no_npz_is_refused(tmp_path: Path) -> None:
    (tmp_path / GOLDEN_FILE).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot be read safely"):
        read_golden(tmp_path / GOLDEN_FILE, count=1, classes=2)


def test_writer_refuses_mismatched_or_empty_sets() -> None:
    with pytest.raises(ValueError, match="3 inputs for 2 logit rows"):
        golden_arrays(np.zeros((3, 1, 2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="0 inputs"):
        golden_arrays(np.zeros((0, 1, 2, 2)), np.zeros((0, 3)))
