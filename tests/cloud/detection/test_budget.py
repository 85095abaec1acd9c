"""A time budget ends detector training early, with the figures that say how much was trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.config import TrainConfig
from cloud.detection import cpu_clock
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


def test_the_cpu_seconds_reported_are_read_from_the_clock_the_budget_stopped_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[float] = []

    def clock() -> float:  # half a CPU-second more at every read, whoever reads it
        reads.append(0.5 * len(reads))
        return reads[-1]

    monkeypatch.setattr(cpu_clock, "cpu_seconds", clock)
    cfg = TrainConfig.model_validate({
        "task": "detection",
        "trainer": {"max_epochs": 50, "accelerator": "cpu", "progress_bar": False, "lr": 0.01,
                    "log_dir": str(tmp_path / "runs")},
        "data": {"batch_size": 8},
        "detection": {"image_size": [64, 64], "width": 4, "top_k": 10, "train_scenes": 16, "val_scenes": 4,
                      "test_scenes": 4, "max_scale": 30, "min_scale": 12, "train_budget_cpu_s": 2.0},
        "export": {"calibration_samples": 4},
        "publish": {"name": "budget", "work_dir": str(tmp_path / "build")},
    })
    metrics = train_detector(cfg).metrics
    assert len(reads) > 2, "the budget read the clock between the figure's first and last reads"
    steps = int(metrics["train_images"]) // 8  # 16 scenes in batches of 8: every batch is full
    # one read per optimiser step (the scheduler's and the stop check's share it), a handful around the fit
    assert len(reads) - steps <= 5
    assert metrics["train_images"] <= 4 * 8, "the budget stopped on this clock within a few steps"
    assert metrics["train_cpu_seconds"] == reads[-1] - reads[0] >= 2.0
