"""A time budget ends detector training early, with the figures that say how much was trained."""

from __future__ import annotations

from pathlib import Path

from cloud.config import TrainConfig
from cloud.detection.train import train_detector


def test_a_cpu_budget_stops_training_long_before_its_epochs_run_out(tmp_path: Path) -> None:
    cfg = TrainConfig.model_validate({
        "task": "detection",
        "trainer": {"max_epochs": 200, "accelerator": "cpu", "progress_bar": False, "lr": 0.01,
                    "log_dir": str(tmp_path / "runs")},
        "data": {"batch_size": 8},
        "detection": {"image_size": [64, 64], "width": 4, "top_k": 10, "train_scenes": 16, "val_scenes": 4,
                      "test_scenes": 4, "max_scale": 30, "min_scale": 12, "train_budget_cpu_s": 2.0},
        "export": {"calibration_samples": 4},
        "publish": {"name": "budget", "work_dir": str(tmp_path / "build")},
    })
    metrics = train_detector(cfg).metrics
    assert metrics["epochs"] < 200 and metrics["train_images"] < 200 * 16
    assert metrics["train_cpu_seconds"] > 0 and metrics["train_images"] > 0
