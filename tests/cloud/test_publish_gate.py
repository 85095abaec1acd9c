"""Training on a user's own images publishes only a model worth serving: above publish.min_accuracy and not worse
than the version it replaces on the same test split; a refused model writes nothing to the store, and says why in
one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cloud.config import TrainConfig
from cloud.errors import GateError
from cloud.pipeline import run
from cloud.publish_gate import renormalize
from shared.config_loader import load_config
from shared.manifest import Preprocess
from shared.object_store import LocalStore

EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]
FAST = {"trainer.progress_bar": False, "trainer.accelerator": "cpu", "export.precisions": ["fp32"],
        "export.latency_runs": 10, "export.calibration_samples": 16, "export.golden_samples": 4,
        "data.batch_size": 16}


def colour_folder(root: Path, per_class: int = 20, noise_only: bool = False) -> Path:
    """Three classes told apart by their dominant colour (learnable), or by nothing at all (noise_only)."""
    rng = np.random.default_rng(1)
    for c, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (24, 24, 3)).astype(np.uint8)
            if not noise_only:
                pixels[..., c] += 150
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _cfg(tmp: Path, data: Path, **flags: Any) -> TrainConfig:
    return load_config(TrainConfig, None, {
        **FAST, "data.source": "folder", "data.dir": str(data), "publish.store.uri": str(tmp / "store"),
        "publish.dev_key_dir": str(tmp / "keys"), "publish.work_dir": str(tmp / "build"),
        "trainer.log_dir": str(tmp / "runs"), **flags,
    }, {})


def test_a_model_below_the_floor_is_refused_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    data = colour_folder(tmp_path / "data", per_class=15, noise_only=True)
    store = tmp_path / "store"
    flags = [f"--{k}={v}" for k, v in FAST.items() if k != "export.precisions"]
    out = subprocess.run(
        [*EDGEFERRY, "train", "--data", str(data), "--store", str(store), "--epochs", "1",
         "--export.precisions=[fp32]", *flags, f"--publish.dev_key_dir={tmp_path / 'keys'}",
         f"--publish.work_dir={tmp_path / 'build'}", f"--trainer.log_dir={tmp_path / 'runs'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: digits not published: test accuracy") and "below publish.min_accuracy 0.6" in last
    assert "training digits_cnn (width 1) on 28x28 rgb" in out.stderr  # what it chose for 24x24 colour images
    assert not store.exists() or not any(p.is_file() for p in store.rglob("*"))
    assert not list((tmp_path / "build").rglob("*.onnx"))


@pytest.mark.slow
def test_a_worse_model_than_the_published_one_is_refused_on_the_same_split(tmp_path: Path) -> None:
    data = colour_folder(tmp_path / "data")
    good = run(_cfg(tmp_path, data, **{"trainer.max_epochs": 8}))
    assert good is not None and good.published is not None
    v1 = good.manifest.variants[0].metrics.accuracy
    assert v1 is not None and v1 >= 0.9
    store = LocalStore(tmp_path / "store")
    before = sorted(store.list("models/"))
    # One epoch at a crawling learning rate: above a floor of 0 but clearly worse than v1.
    worse = _cfg(tmp_path, data, **{"trainer.max_epochs": 1, "trainer.lr": 1e-6, "publish.min_accuracy": 0.0})
    with pytest.raises(GateError, match=r"not published: test accuracy 0\.\d+ is below v1's 1\.0000 on the same 12 "
                                        r"held-out images \(publish\.max_accuracy_drop 0\.01\)") as refused:
        run(worse)
    assert "\n" not in str(refused.value)
    assert sorted(store.list("models/")) == before  # nothing written, latest.json still v1
    # The same model is published when the comparison is turned off: the gate, not training, refused it.
    forced = run(worse.model_copy(update={"publish": worse.publish.model_copy(update={"compare_published": False})}))
    assert forced is not None and forced.published is not None and forced.published.version == 2


def test_the_published_model_reads_the_split_as_its_own_recipe_feeds_it() -> None:
    new = Preprocess(resize=(4, 4), channel_order="rgb", scale=1 / 255, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.25])
    old = Preprocess(resize=(4, 4), channel_order="rgb", scale=1 / 255, mean=[0.1, 0.1, 0.1], std=[1.0, 0.5, 0.5],
                     invert=True)
    pixels = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 4)).astype(np.float64)

    def fed(p: Preprocess) -> np.ndarray:
        mean, std = np.array(p.mean).reshape(1, 3, 1, 1), np.array(p.std).reshape(1, 3, 1, 1)
        return (((255 - pixels if p.invert else pixels) * p.scale - mean) / std).astype(np.float32)

    np.testing.assert_allclose(renormalize(fed(new), new, old), fed(old), atol=1e-5)
