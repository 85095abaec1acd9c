"""Each variant of a brought model is run over the eval set once: its figures and its agreement share one run."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from cloud.byo import package, variants
from cloud.byo.evaluate import Outputs, run_model
from cloud.byo.package import PackageRequest, package_model
from shared.signing import KeyPairPaths, generate_keypair
from tests.cloud.byo.external_models import classifier_onnx, write_colour_folders

EVAL_PER_CLASS = 5
EVAL_IMAGES = 3 * EVAL_PER_CLASS


@pytest.fixture
def pair(tmp_path: Path) -> KeyPairPaths:
    return generate_keypair(tmp_path / "keys" / "pkg.key")


def test_every_kept_variant_runs_over_the_eval_images_once(
    tmp_path: Path, pair: KeyPairPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[tuple[str, int]] = []

    def counting(path: Path, inputs: np.ndarray, threads: int = 0) -> Outputs:
        runs.append((Path(path).name, len(inputs)))
        return run_model(path, inputs, threads)

    monkeypatch.setattr(variants, "run_model", counting)
    monkeypatch.setattr(package, "run_model", counting)
    (tmp_path / "labels.txt").write_text("red\ngreen\nblue\n")
    done = package_model(PackageRequest(
        onnx=classifier_onnx(tmp_path / "colour.onnx"), task="classification", name="colours",
        store=str(tmp_path / "store"), signing_key=pair.private, labels=tmp_path / "labels.txt",
        calibration_dir=write_colour_folders(tmp_path / "calib", 4),
        eval_data=write_colour_folders(tmp_path / "eval", EVAL_PER_CLASS),
    ))
    assert [v.precision for v in done.manifest.variants] == ["fp32", "fp16", "int8"]
    assert all(v.metrics.agreement == 1.0 for v in done.manifest.variants)
    eval_runs = Counter(name for name, count in runs if count == EVAL_IMAGES)
    assert eval_runs == {"colour.onnx": 1, "model.fp16.onnx": 1, "model.int8.onnx": 1}
