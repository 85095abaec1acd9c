"""Training: a short run learns, returns a consistent TrainResult, is reproducible, and runs as 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cloud.config import TrainConfig
from cloud.models import build_model
from cloud.train import TrainResult, evaluate, train


def _cfg(tmp_path: Path, **over: object) -> TrainConfig:
    tree: dict[str, object] = {
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "progress_bar": False, "log_dir": str(tmp_path / "runs")},
        "data": {"max_samples": 600, "batch_size": 32},
        "export": {"calibration_samples": 50},
    }
    for key, value in over.items():
        section, name = key.split("__")
        tree.setdefault(section, {})[name] = value  # type: ignore[index]
    return TrainConfig.model_validate(tree)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(_cfg(tmp_path_factory.mktemp("short")))


def test_short_run_learns_better_than_chance(short_run: TrainResult) -> None:
    assert short_run.metrics["test_acc"] > 0.5  # chance is 0.1
    assert short_run.metrics["val_acc"] > 0.5
    assert short_run.metrics["epochs"] == 2
    for key in ("val_loss", "train_loss", "test_loss", "train_seconds", "best_epoch"):
        assert np.isfinite(short_run.metrics[key]), key


def test_result_is_consistent_for_export(short_run: TrainResult) -> None:
    r = short_run
    assert r.is_global_zero and r.world_size == 1
    assert r.labels == [str(d) for d in range(10)]
    assert r.input_shape == (1, 28, 28) == (r.preprocess.channels, *r.preprocess.resize)
    assert (r.dataset.num_train, r.dataset.num_val, r.dataset.num_test) == (420, 60, 120)
    assert r.test_inputs.shape == (120, 1, 28, 28) and r.test_inputs.dtype == np.float32
    assert r.test_labels.shape == (120,) and r.test_labels.dtype == np.int64
    assert r.calib_inputs.shape == (50, 1, 28, 28) and r.calib_inputs.dtype == np.float32
    assert not r.model.training
    assert all(p.device.type == "cpu" for p in r.model.parameters())
    acc, _ = evaluate(r.model, r.test_inputs, r.test_labels)
    assert acc == pytest.approx(r.metrics["test_acc"])


def test_returned_model_is_the_best_checkpoint(short_run: TrainResult) -> None:
    assert short_run.best_checkpoint is not None and short_run.best_checkpoint.is_file()
    state = torch.load(short_run.best_checkpoint, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items()}
    model = build_model(**short_run.model.arch_config)  # type: ignore[arg-type]
    model.load_state_dict(weights)
    for name, value in short_run.model.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[name], rtol=0, atol=0)


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    def weights(seed: int, run: str) -> dict[str, torch.Tensor]:
        cfg = _cfg(tmp_path / run, trainer__max_epochs=1, trainer__seed=seed, data__max_samples=200)
        return train(cfg).model.state_dict()

    a, b, c = weights(7, "a"), weights(7, "b"), weights(8, "c")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)
    assert any(not torch.equal(a[name], c[name]) for name in a if a[name].is_floating_point())


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path: Path) -> None:
    config = {
        "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp", "max_epochs": 1, "progress_bar": False,
                    "log_dir": str(tmp_path / "runs")},
        "data": {"max_samples": 200, "batch_size": 32},
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "cloud.train", "--config", "train.yaml", "--result", "result-{rank}.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "rank 0 of 2 finished training" in output
    assert "rank 1 of 2 finished training" in output
    assert sorted(p.name for p in tmp_path.glob("result-*.json")) == ["result-0.json"]
    result = json.loads((tmp_path / "result-0.json").read_text())
    assert result["world_size"] == 2 and result["metrics"]["world_size"] == 2
    assert result["num_test"] == 40 and result["best_checkpoint"]


def test_entry_reports_bad_data_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cloud.train import main

    missing = tmp_path / "nope"
    code = main(["--set", "data.source=folder", "--set", f"data.dir={missing}", "--result", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"error: data directory {missing} does not exist"]
    assert not (tmp_path / "r.json").exists()
