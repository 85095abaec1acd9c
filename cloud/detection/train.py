"""Train the detector with Lightning on one process and hand export the model, splits and figures it needs."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from cloud.config import TrainConfig
from cloud.cpu_features import detect_cpu
from cloud.detection import cpu_clock
from cloud.detection.coco_eval import MapScores, coco_map
from cloud.detection.data import DetectionData, prepare_detection_data, scene_spec
from cloud.detection.fresh import FreshScenes
from cloud.detection.lit_module import LitDetector
from cloud.detection.model import DetectorExport
from cloud.detection.precision import training_precision
from cloud.detection.samples import DetectionSplit
from cloud.detection.schedule import budgets
from cloud.detection.torch_data import DetectionDataModule, image_batches
from cloud.errors import CloudError
from cloud.preprocessing import normalize
from cloud.train import EpochProgressBar, _quiet_lightning

log = logging.getLogger(__name__)


class DetectionEpochSummary(Callback):
    """One log line per epoch with the detector's losses, for runs without a progress bar (pipes, log files)."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        m = trainer.callback_metrics

        def fmt(key: str) -> str:
            return f"{float(m[key]):.4f}" if key in m else "n/a"

        log.info("epoch %d/%d: train_loss=%s val_loss=%s val_heatmap_loss=%s", trainer.current_epoch + 1,
                 trainer.max_epochs, fmt("train_loss_epoch"), fmt("val_loss"), fmt("val_hm_loss"))


@dataclass
class DetectionTrainResult:
    """The trained network wrapped with its decode, the data it was judged on, and the training figures."""

    model: DetectorExport
    data: DetectionData
    metrics: dict[str, float]
    test_inputs: np.ndarray
    calib_inputs: np.ndarray
    best_checkpoint: Path | None


def predict_torch(model: DetectorExport, inputs: np.ndarray, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded (boxes, scores, class ids) of the eval-mode torch model over preprocessed inputs."""
    out: list[list[np.ndarray]] = [[], [], []]
    model = model.eval()
    with torch.inference_mode():
        for i in range(0, len(inputs), batch):
            for acc, t in zip(out, model(torch.from_numpy(inputs[i : i + batch])), strict=True):
                acc.append(t.numpy())
    boxes, scores, ids = (np.concatenate(a) for a in out)
    return boxes, scores, ids


def evaluate_map(
    model: DetectorExport, split: DetectionSplit, inputs: np.ndarray, classes: int, batch: int
) -> MapScores:
    """mAP of the torch model on a split (pycocotools)."""
    boxes, scores, ids = predict_torch(model, inputs, batch)
    return coco_map(split.boxes, split.classes, boxes, scores, ids, classes)


def train_detector(cfg: TrainConfig) -> DetectionTrainResult:
    """Generate or load the data, fit, keep the best (fixed data) or last (fresh scenes) weights, score on test."""
    tc, dc = cfg.trainer, cfg.detection
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    _quiet_lightning()
    pl.seed_everything(tc.seed, workers=True)
    started = time.perf_counter()
    data = prepare_detection_data(cfg.data, dc, tc.seed)
    data_seconds = time.perf_counter() - started
    log.info("detection data ready in %.1f s: %d classes, train/val/test %d/%d/%d", data_seconds,
             len(data.classes), len(data.train), len(data.val), len(data.test))
    lit = LitDetector(len(data.classes), 3, dc.width, tc.lr, tc.weight_decay,
                      tuple(budgets(dc.train_budget_s, dc.train_budget_cpu_s)))
    synthetic = cfg.data.source not in ("folder", "coco")
    fresh = FreshScenes(scene_spec(dc), dc.train_scenes, tc.seed, data.preprocess, len(data.classes),
                        dc.max_objects) if synthetic and dc.fresh_scenes else None
    dm = DetectionDataModule(data.train, data.val, data.preprocess, len(data.classes), cfg.data.batch_size,
                             dc.max_objects, tc.seed, fresh, dc.loader_workers)
    precision = training_precision(dc.train_precision, tc.accelerator == "cpu" or not torch.cuda.is_available(),
                                   tc.precision, detect_cpu())
    checkpoint = ModelCheckpoint(monitor="val_loss", mode="min", save_top_k=1, filename="best-{epoch:02d}")
    show_bar = tc.progress_bar and sys.stdout.isatty()
    progress: Callback = EpochProgressBar(leave=True) if show_bar else DetectionEpochSummary()
    trainer = pl.Trainer(
        accelerator=tc.accelerator, devices=1, precision=precision,  # type: ignore[arg-type]
        max_epochs=tc.max_epochs, deterministic=tc.deterministic, default_root_dir=tc.log_dir,
        logger=CSVLogger(save_dir=tc.log_dir, name=cfg.publish.name), callbacks=[checkpoint, progress],
        enable_progress_bar=show_bar, enable_model_summary=tc.progress_bar,
        log_every_n_steps=max(1, min(50, len(data.train) // cfg.data.batch_size)),
    )
    log.info("training %s, %s", precision, f"{dc.train_scenes} fresh scenes per epoch" if fresh is not None
             else f"{len(data.train)} fixed images per epoch")
    fit_started, cpu_started = time.perf_counter(), cpu_clock.cpu_seconds()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined.*")  # FreshScenes
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        trainer.fit(lit, datamodule=dm)
    fit_seconds, fit_cpu_seconds = time.perf_counter() - fit_started, cpu_clock.cpu_seconds() - cpu_started
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    if best is not None and fresh is None:  # fresh scenes cannot overfit: the last, most annealed weights win
        try:
            state = torch.load(best, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise CloudError(f"cannot load the best checkpoint {best}: {exc}") from exc
        lit.load_state_dict(state["state_dict"])
    net = lit.model.cpu().eval()
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # trained channels-last
    model = DetectorExport(net, dc.top_k, dc.image_size).eval()
    test_inputs = normalize(data.test.images, data.preprocess)
    scores = evaluate_map(model, data.test, test_inputs, len(data.classes), dc.eval_batch)
    picks = np.random.default_rng(tc.seed).permutation(len(data.train))[: cfg.export.calibration_samples]
    calib = np.concatenate(image_batches(data.train.images[np.sort(picks)], data.preprocess, 256))
    m = trainer.callback_metrics
    metrics = {
        "train_seconds": round(fit_seconds, 2),
        "train_cpu_seconds": round(fit_cpu_seconds, 2),
        "train_images": float(trainer.global_step * cfg.data.batch_size),
        "data_seconds": round(data_seconds, 2),
        "epochs": float(trainer.current_epoch),
        "val_loss": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None
        else float(m.get("val_loss", float("nan"))),
        "train_loss": float(m.get("train_loss_epoch", float("nan"))),
        "test_map50": scores.map50,
        "test_map50_95": scores.map50_95,
    }
    log.info("trained detector in %.1f s, %.0f CPU-s (+%.1f s data): test mAP@.5=%.4f mAP@.5:.95=%.4f on %d "
             "held-out images", fit_seconds, fit_cpu_seconds, data_seconds, scores.map50, scores.map50_95,
             len(data.test))
    return DetectionTrainResult(model, data, metrics, test_inputs, calib, best)
