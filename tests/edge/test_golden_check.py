"""Smoke test of a loaded model against the package's golden samples."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from edge.errors import PackageRejected
from edge.golden_check import required_agreement, run_smoke_test
from shared.integrity import sha256_bytes
from shared.manifest import Golden, Manifest
from tests.edge.detection_package import build_detection_package
from tests.edge.package_factory import GOLDEN_FILE, build_package, golden_npz, onnx_model
from tests.edge.simple_ort import SimpleOrtModel


def _package(tmp_path: Path, **kw: object) -> tuple[Manifest, Path]:
    manifest, files = build_package("digits", 1, **kw)  # type: ignore[arg-type]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return manifest, tmp_path


def _with_golden(manifest: Manifest, directory: Path, data: bytes, count: int | None = None) -> Manifest:
    (directory / GOLDEN_FILE).write_bytes(data)
    golden = Golden(file=GOLDEN_FILE, sha256=sha256_bytes(data), bytes=len(data), count=count or manifest.golden.count)
    return manifest.model_copy(update={"golden": golden})


def test_good_model_passes(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    result = run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)
    assert result.matched == result.samples == manifest.golden.count
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-4


def test_nan_outputs_are_rejected(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path, sabotage={"fp32": "nan"})
    with pytest.raises(PackageRejected, match="NaN or infinite"):
        run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)


def test_wrong_output_shape_is_rejected(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path, sabotage={"fp32": "shape"})
    with pytest.raises(PackageRejected, match=r"shape \(16, 11\), expected \(16, 10\)"):
        run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)


def test_disagreeing_labels_are_rejected(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path, sabotage={"fp32": "labels"})
    with pytest.raises(PackageRejected, match=r"top-1 equals the golden label on \d+/16"):
        run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)


def _golden_with_flipped_labels(manifest: Manifest, d: Path, flips: int) -> Manifest:
    with np.load(d / GOLDEN_FILE, allow_pickle=False) as z:
        inputs, logits, labels = z["inputs"], z["logits"], z["labels"].copy()
    labels[:flips] = (labels[:flips] + 1) % 10
    return _with_golden(manifest, d, golden_npz(inputs, logits, labels))


def test_fp32_needs_every_sample_reduced_precision_ninety_percent(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    manifest = _golden_with_flipped_labels(manifest, d, flips=1)  # 15/16 = 93.75 %
    model = SimpleOrtModel(d / "model.fp32.onnx")
    with pytest.raises(PackageRejected, match="fp32 needs at least 100%"):
        run_smoke_test(model, d / GOLDEN_FILE, manifest)
    assert run_smoke_test(model, d / GOLDEN_FILE, manifest, precision="int8").matched == 15
    assert run_smoke_test(model, d / GOLDEN_FILE, manifest, precision="fp16").matched == 15
    manifest = _golden_with_flipped_labels(manifest, d, flips=2)  # 14/16 = 87.5 %
    with pytest.raises(PackageRejected, match="int8 needs at least 90%"):
        run_smoke_test(model, d / GOLDEN_FILE, manifest, precision="int8")
    assert run_smoke_test(model, d / GOLDEN_FILE, manifest, precision="int8", reduced_min_agreement=0.8).matched == 14
    with pytest.raises(PackageRejected, match="fp32 needs at least 100%"):
        run_smoke_test(model, d / GOLDEN_FILE, manifest, reduced_min_agreement=0.5)


def test_required_agreement_defaults() -> None:
    assert required_agreement("fp32") == 1.0
    assert required_agreement("int8") == required_agreement("fp16") == required_agreement("tensorrt") == 0.9
    assert required_agreement("fp32", 0.5) == 1.0
    assert required_agreement("int8", 0.5) == 0.5


def test_golden_file_that_does_not_match_the_manifest_is_rejected(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    data = bytearray((d / GOLDEN_FILE).read_bytes())
    data[-30] ^= 0xFF
    (d / GOLDEN_FILE).write_bytes(bytes(data))
    with pytest.raises(PackageRejected, match=r"golden samples: .*sha256"):
        run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)


def test_pickled_golden_arrays_are_never_loaded(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, inputs=np.array([{"evil": 1}] * 16, dtype=object), labels=np.zeros(16, np.int64))
    manifest = _with_golden(manifest, d, buf.getvalue())
    with pytest.raises(PackageRejected, match="cannot be read safely"):
        run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)


def test_golden_inputs_that_do_not_fit_the_model_are_rejected(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    (d / "other.onnx").write_bytes(onnx_model(input_hw=(6, 6)).SerializeToString())
    with pytest.raises(PackageRejected, match="do not fit the model input"):
        run_smoke_test(SimpleOrtModel(d / "other.onnx"), d / GOLDEN_FILE, manifest)


def test_golden_missing_arrays_are_rejected(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    buf = io.BytesIO()
    np.savez(buf, inputs=np.zeros((16, 1, 8, 8), np.float32))
    manifest = _with_golden(manifest, d, buf.getvalue())
    with pytest.raises(PackageRejected, match=r"lack arrays \['labels'\]"):
        run_smoke_test(SimpleOrtModel(d / "model.fp32.onnx"), d / GOLDEN_FILE, manifest)


class _FixedBatchModel:
    """A LoadedModel whose input batch is fixed at 3, wrapping a real session."""

    backend = "fixed"
    input_name = "input"
    input_shape: tuple[int | str, ...] = (3, 1, 8, 8)

    def __init__(self, inner: SimpleOrtModel) -> None:
        self.inner = inner
        self.batches: list[int] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        assert len(batch) == 3
        return self.inner.run(batch)

    def close(self) -> None:
        self.inner.close()


def test_fixed_batch_models_get_padded_chunks(tmp_path: Path) -> None:
    manifest, d = _package(tmp_path)
    model = _FixedBatchModel(SimpleOrtModel(d / "model.fp32.onnx"))
    assert run_smoke_test(model, d / GOLDEN_FILE, manifest).matched == 16
    assert model.batches == [3] * 6  # 16 samples -> 5 full chunks + 1 padded


# -- detectors: boxes against the FP32 reference's, as F1 ------------------------------------------------------


def _detector(tmp_path: Path, **kw: object) -> tuple[Manifest, Path]:
    manifest, files = build_detection_package("squares", 1, precisions=("fp32", "int8"), **kw)  # type: ignore[arg-type]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return manifest, tmp_path


def test_a_detector_that_finds_the_reference_boxes_passes(tmp_path: Path) -> None:
    manifest, d = _detector(tmp_path)
    result = run_smoke_test(SimpleOrtModel(d / "model.int8.onnx"), d / GOLDEN_FILE, manifest, precision="int8")
    assert result.f1 == result.agreement == 1.0
    assert result.matched == 12  # 0 + 1 + 2 + 3 squares, twice
    assert "detection F1 1.000" in result.summary


def test_a_detector_whose_boxes_moved_is_refused(tmp_path: Path) -> None:
    manifest, d = _detector(tmp_path, sabotage={"int8": "shift"})
    with pytest.raises(PackageRejected, match=r"F1 0\.000 .*0 of 12 reference boxes found.*at least 0\.90"):
        run_smoke_test(SimpleOrtModel(d / "model.int8.onnx"), d / GOLDEN_FILE, manifest, precision="int8")


def test_a_detector_that_invents_objects_is_refused_unless_the_minimum_allows(tmp_path: Path) -> None:
    manifest, d = _detector(tmp_path, sabotage={"int8": "ghosts"})
    with pytest.raises(PackageRejected, match=r"12 of 12 reference boxes found, \d+ boxes reported"):
        run_smoke_test(SimpleOrtModel(d / "model.int8.onnx"), d / GOLDEN_FILE, manifest, precision="int8")
    lenient = run_smoke_test(SimpleOrtModel(d / "model.int8.onnx"), d / GOLDEN_FILE, manifest, precision="int8",
                             detection_min_agreement=0.1)
    assert 0.1 <= lenient.agreement < 0.9
