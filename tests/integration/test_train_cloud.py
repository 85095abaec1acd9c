"""The cloud job end to end on a small subset: train, export every variant, gate, sign, publish, read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cloud.config import TrainConfig
from cloud.pipeline import run
from cloud.publish import verify_published
from shared.config_loader import load_config
from shared.errors import IntegrityError
from shared.manifest import parse_manifest
from shared.object_store import LocalStore
from shared.signing import load_public_key
from shared.store_config import StoreConfig
from shared.store_open import open_store
from tests.fixtures.s3 import S3Endpoint

EDGEFERRY = [sys.executable, "-m", "edgeferry.cli"]


def _cfg(tmp: Path, store: StoreConfig) -> TrainConfig:
    return load_config(
        TrainConfig,
        Path("configs/train-default.yaml"),
        {
            "data.max_samples": 800,
            "trainer.max_epochs": 1,
            "trainer.progress_bar": False,
            "trainer.log_dir": str(tmp / "runs"),
            "export.latency_runs": 20,
            "export.calibration_samples": 64,
            "publish.store": store.model_dump(),
            "publish.dev_key_dir": str(tmp / "keys"),
            "publish.work_dir": str(tmp / "build"),
            # One epoch on 800 images tests the mechanics, not the model: the accuracy floor has its own tests.
            "publish.min_accuracy": 0.0,
        },
        {},
    )


@pytest.mark.slow
def test_train_export_publish_local_and_s3(tmp_path: Path, s3: S3Endpoint) -> None:
    local = StoreConfig(uri=str(tmp_path / "store"))
    result = run(_cfg(tmp_path, local))
    assert result is not None and result.published is not None
    m = result.manifest
    assert {v.precision for v in m.variants} | {r.precision for r in m.rejected} == {"fp32", "fp16", "int8"}
    fp32 = next(v for v in m.variants if v.precision == "fp32")
    assert fp32.metrics.agreement == 1.0 and fp32.metrics.max_abs_diff is not None
    assert fp32.metrics.max_abs_diff <= 1e-4
    assert m.train.dataset.num_train > 0 and m.train.config["trainer"]["max_epochs"] == 1
    int8 = next((v for v in m.variants if v.precision == "int8"), None)
    if int8 is not None:
        assert int8.quantization is not None and int8.quantization.format == "QDQ"
        assert int8.target.cpu_features, "the build CPU's features are recorded"
    pub = load_public_key(tmp_path / "keys" / "edgeferry.pub")
    store = LocalStore(tmp_path / "store")
    assert verify_published(store, "digits", None, [pub]).version == 1
    golden = np.load(result.package_dir / m.golden.file, allow_pickle=False)
    assert golden["inputs"].shape[0] == m.golden.count

    s3_cfg = StoreConfig(uri=f"s3://{s3.bucket}/edgeferry", endpoint_url=s3.url)
    again = run(_cfg(tmp_path, s3_cfg).model_copy(update={}))
    assert again is not None and again.published is not None
    s3_store = open_store(s3_cfg)
    checked = verify_published(s3_store, "digits", None, [pub])
    assert parse_manifest(s3_store.get("models/digits/1/manifest.json")) == checked
    key = f"models/digits/1/{checked.variants[0].file}"
    blob = bytearray(s3_store.get(key))
    blob[len(blob) // 2] ^= 0x01
    s3_store.put(key, bytes(blob))
    with pytest.raises(IntegrityError):
        verify_published(s3_store, "digits", 1, [pub])


def test_bad_inputs_fail_in_one_line_and_write_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    cases = [
        (["--data", str(tmp_path / "missing")], "does not exist"),
        (["--data", str(tmp_path)], "class"),
        (["--signing-key", str(tmp_path / "none.key")], "signing key"),
        (["--store", str(tmp_path / "file" / "store")], "not writable"),
    ]
    (tmp_path / "file").write_text("a file where the store's parent should be")
    for extra, needle in cases:
        out = subprocess.run(
            [*EDGEFERRY, "train", "--config", "configs/train-default.yaml", "--store", str(store),
             "--set", f"publish.work_dir={tmp_path / 'build'}", "--set", f"publish.dev_key_dir={tmp_path / 'keys'}",
             *extra],
            capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 1, (extra, out.stderr[-1500:])
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("error:") and needle in last.lower(), (extra, last)
    assert not store.exists() or not any(store.rglob("*.json"))
    assert not (tmp_path / "build").exists() or not any((tmp_path / "build").rglob("*.onnx"))


def test_unreachable_s3_endpoint_fails_before_training(tmp_path: Path) -> None:
    from tests.fixtures.ports import free_port

    out = subprocess.run(
        [*EDGEFERRY, "train", "--config", "configs/train-default.yaml", "--store", "s3://bucket/x",
         "--set", f"publish.store.endpoint_url=http://127.0.0.1:{free_port()}", "--set", "publish.store.max_attempts=2",
         "--set", f"publish.dev_key_dir={tmp_path / 'keys'}"],
        capture_output=True, text=True, timeout=120,
        env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 1
    assert "unreachable" in out.stderr.strip().splitlines()[-1]
    assert "epoch" not in out.stderr


def test_no_passing_variant_publishes_nothing_and_exits_1(tmp_path: Path) -> None:
    store = tmp_path / "store"
    out = subprocess.run(
        [*EDGEFERRY, "train", "--config", "configs/train-default.yaml", "--store", str(store), "--epochs", "1",
         "--max-samples", "400", "--set", "export.precisions=[fp32]", "--set", "export.fp32_max_abs_diff=1e-12",
         "--set", f"publish.work_dir={tmp_path / 'build'}", "--set", f"publish.dev_key_dir={tmp_path / 'keys'}",
         "--set", f"trainer.log_dir={tmp_path / 'runs'}", "--set", "trainer.progress_bar=false"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no variant passed its gate") and "fp32" in last
    assert not store.exists() or not any(store.rglob("latest.json"))
    assert not list((tmp_path / "build").rglob("*.onnx"))
