"""Train a sensor model with Lightning on windows cut by the shared recipe, and hand export what it needs."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cloud.errors import CloudError, DataError
from cloud.sensor.basic_motions import load_basic_motions
from cloud.sensor.channel_scores import channel_scores
from cloud.sensor.config import SensorTrainConfig
from cloud.sensor.csv_loader import load_csv_dir
from cloud.sensor.fault_eval import AnomalyEval, anomaly_eval_set
from cloud.sensor.lit_modules import LitAutoencoder, LitSensorClassifier
from cloud.sensor.recordings import SensorDataset
from cloud.sensor.splits import SensorSplits, Windows, cut, dataset_sha256, split_recordings
from shared.manifest import DatasetInfo
from shared.window_recipe import WindowRecipe

log = logging.getLogger(__name__)
ANOMALY_LABELS = ["normal", "anomaly"]


@dataclass
class SensorTrainResult:
    """The trained eval-mode model, its recipe and the held-out arrays export gates on."""

    task: str
    model: nn.Module
    recipe: WindowRecipe
    labels: list[str]
    dataset: DatasetInfo
    metrics: dict[str, float]
    test: Windows
    val: Windows
    calib_inputs: np.ndarray
    anomaly: AnomalyEval | None
    best_checkpoint: Path | None

    @property
    def input_shape(self) -> tuple[int, int]:
        """(C, T) of one window."""
        return self.recipe.num_channels, self.recipe.window


def load_sensor_data(cfg: SensorTrainConfig) -> SensorDataset:
    """The configured recordings, checked before anything is trained or written."""
    if cfg.data.source == "basic_motions":
        return load_basic_motions()
    return load_csv_dir(cfg.data, need_labels=cfg.task == "sensor-classification")


def prepare(cfg: SensorTrainConfig, data: SensorDataset) -> tuple[SensorSplits, Windows, Windows, Windows]:
    """Splits and their windows; classification keeps only windows of one class."""
    splits = split_recordings(data, cfg.data, cfg.trainer.seed)
    classes = splits.classes if cfg.task == "sensor-classification" else []
    if cfg.task == "sensor-classification" and len(classes) < 2:
        raise DataError(f"{data.name}: classification needs at least 2 classes, found {classes or 'none'}")
    parts = [cut(s, splits.recipe, classes) for s in (splits.train, splits.val, splits.test)]
    if cfg.task == "sensor-classification":
        parts = [p.labelled() for p in parts]
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if len(part) == 0:
            raise DataError(f"{data.name}: the {name} split has no full window of {cfg.data.window} readings"
                            + (" of one class" if classes else ""))
    return splits, parts[0], parts[1], parts[2]


def _loader(w: Windows, task: str, batch: int, shuffle: bool, seed: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    x = torch.from_numpy(w.inputs)
    ds = TensorDataset(x, torch.from_numpy(w.labels)) if task == "sensor-classification" else TensorDataset(x)
    return DataLoader(ds, batch_size=batch, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


def train_sensor(cfg: SensorTrainConfig, data: SensorDataset) -> SensorTrainResult:
    """Fit on the training windows, reload the best checkpoint, and measure it on the held-out windows."""
    tc = cfg.trainer
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    pl.seed_everything(tc.seed, workers=True, verbose=False)
    splits, train, val, test = prepare(cfg, data)
    recipe = splits.recipe
    c, t = recipe.num_channels, recipe.window
    lit: pl.LightningModule
    if cfg.task == "sensor-classification":
        lit = LitSensorClassifier(c, len(splits.classes), cfg.model.width, cfg.model.dropout, tc.lr, tc.weight_decay)
        checkpoint = ModelCheckpoint(monitor="val_acc", mode="max", save_top_k=1)
    else:
        lit = LitAutoencoder(c, t, cfg.model.width, cfg.model.latent, tc.lr, tc.weight_decay)
        checkpoint = ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1)
    show_bar = tc.progress_bar and sys.stdout.isatty()
    trainer = pl.Trainer(
        accelerator=tc.accelerator, devices=1, precision=tc.precision,  # type: ignore[arg-type]
        max_epochs=tc.max_epochs, deterministic=tc.deterministic, default_root_dir=tc.log_dir,
        logger=CSVLogger(save_dir=tc.log_dir, name=cfg.publish.name), callbacks=[checkpoint],
        enable_progress_bar=show_bar, enable_model_summary=False, log_every_n_steps=1,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        trainer.fit(
            lit,
            _loader(train, cfg.task, cfg.data.batch_size, True, tc.seed),
            _loader(val, cfg.task, cfg.data.batch_size, False, tc.seed),
        )
    seconds = time.perf_counter() - started
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    if best is not None:
        lit.load_state_dict(_load(best)["state_dict"])
    model: nn.Module = lit.model.cpu().eval()  # type: ignore[union-attr]
    if cfg.task == "anomaly":
        # What ships: the trained autoencoder plus the per-channel features it misses, scaled on training windows.
        model = channel_scores(model.autoencoder, train.inputs, cfg.anomaly.feature_percentile)  # type: ignore[arg-type]
    picks = np.sort(np.random.default_rng(tc.seed).permutation(len(train))[: cfg.export.calibration_samples])
    every = [*splits.train, *splits.val, *splits.test]
    info = DatasetInfo(
        name=data.name, sha256=dataset_sha256(every), num_train=len(train), num_val=len(val), num_test=len(test),
    )
    metrics = {"train_seconds": round(seconds, 2), "epochs": float(trainer.current_epoch),
               "train_recordings": float(len(splits.train)), "val_recordings": float(len(splits.val)),
               "test_recordings": float(len(splits.test))}
    anomaly = None
    calib = train.inputs[picks]
    if cfg.task == "anomaly":
        anomaly = anomaly_eval_set(splits.test, recipe, list(cfg.anomaly.faults), cfg.anomaly.fault_seed)
        calib = np.concatenate([calib, _faulty_calibration(splits, cfg, len(calib))])
    log.info("trained the %s model in %.1f s (%d epochs) on %d windows of %d recordings", cfg.task, seconds,
             trainer.current_epoch, len(train), len(splits.train))
    return SensorTrainResult(
        task=cfg.task, model=model, recipe=recipe,
        labels=splits.classes if cfg.task == "sensor-classification" else list(ANOMALY_LABELS),
        dataset=info, metrics=metrics, test=test, val=val, calib_inputs=calib, anomaly=anomaly,
        best_checkpoint=best,
    )


def _faulty_calibration(splits: SensorSplits, cfg: SensorTrainConfig, count: int) -> np.ndarray:
    """Windows of training recordings with injected faults, so static INT8 ranges cover anomalous inputs too.

    Calibrated on normal windows alone, INT8 clips what lies outside their range: exactly the anomalies, whose
    errors then shrink towards the threshold. The faults use their own seed; no test recording is involved.
    """
    fault_set = anomaly_eval_set(splits.train, splits.recipe, list(cfg.anomaly.faults), cfg.anomaly.fault_seed + 1)
    faulty = fault_set.inputs[fault_set.is_anomaly]
    picks = np.random.default_rng(cfg.trainer.seed).permutation(len(faulty))[:count]
    return faulty[np.sort(picks)]


def _load(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise CloudError(f"cannot load the best checkpoint {path}: {exc}") from exc
    return state
