"""Train a classifier with Lightning (single process or DDP) and hand rank 0 what export needs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme
from pytorch_lightning.loggers import CSVLogger
from torch import nn

from cloud.config import TrainConfig
from cloud.datamodule import ImageDataModule
from cloud.datasets import PreparedData, prepare_data
from cloud.errors import CloudError
from cloud.lit_module import LitClassifier
from cloud.preprocessing import normalize
from shared.errors import EdgeferryError
from shared.manifest import DatasetInfo, Preprocess

log = logging.getLogger(__name__)

_EVAL_BATCH = 256


@dataclass
class TrainResult:
    """What training hands to export; only the rank with is_global_zero carries test and calibration arrays."""

    model: nn.Module
    labels: list[str]
    preprocess: Preprocess
    input_shape: tuple[int, int, int]
    dataset: DatasetInfo
    metrics: dict[str, float]
    test_inputs: np.ndarray
    test_labels: np.ndarray
    calib_inputs: np.ndarray
    is_global_zero: bool
    best_checkpoint: Path | None
    global_rank: int = 0
    world_size: int = 1
    log_dir: Path | None = field(default=None)


# Lightning's info lines that tell a user of `edgeferry train` nothing: an advert and internal steps.
_LIGHTNING_CHATTER = ("\N{ELECTRIC LIGHT BULB} Tip:", "Loading `train_dataloader` to estimate", "TPU available: False")


class _DropLightningChatter(logging.Filter):
    """Drops Lightning's advert and internal-step lines; everything else it logs (GPU use, warnings) stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_LIGHTNING_CHATTER)


def _quiet_lightning() -> None:
    rank_zero = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningChatter) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLightningChatter())


class EpochProgressBar(RichProgressBar):
    """Lightning's bar, counting epochs from 1 like the log lines, showing only the figures a user reads."""

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        return f"Epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs is not None else "")

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        return {k.removesuffix("_epoch"): v for k, v in items.items() if k != "v_num" and not k.endswith("_step")}


def _progress(show_bar: bool) -> Callback:
    """One progress display: the bar on a terminal (each epoch's line stays), else one log line per epoch."""
    if show_bar:
        return EpochProgressBar(leave=True, theme=RichProgressBarTheme(metrics_format=".4f"))
    return EpochSummary()


class EpochSummary(Callback):
    """One log line per epoch on rank 0, so runs without a progress bar still show val_loss and val_acc."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        m = trainer.callback_metrics

        def fmt(key: str) -> str:
            return f"{float(m[key]):.4f}" if key in m else "n/a"

        log.info(
            "epoch %d/%d: train_loss=%s val_loss=%s val_acc=%s",
            trainer.current_epoch + 1, trainer.max_epochs, fmt("train_loss_epoch"), fmt("val_loss"), fmt("val_acc"),
        )


def train(cfg: TrainConfig) -> TrainResult:
    """Fit on every rank, then (rank 0 only, plain torch, no collectives) reload the best checkpoint and test it."""
    tc = cfg.trainer
    if tc.threads is not None:
        torch.set_num_threads(tc.threads)
    _quiet_lightning()
    pl.seed_everything(tc.seed, workers=True)
    data = prepare_data(cfg.data, tc.seed)
    lit = LitClassifier(
        arch=cfg.model.arch,
        num_classes=len(data.classes),
        in_channels=data.preprocess.channels,
        width=cfg.model.width,
        dropout=cfg.model.dropout,
        lr=tc.lr,
        weight_decay=tc.weight_decay,
        image_size=data.preprocess.resize,
    )
    datamodule = ImageDataModule(data, cfg.data.batch_size, cfg.data.num_workers, cfg.data.augment)
    checkpoint = ModelCheckpoint(
        monitor="val_acc", mode="max", save_top_k=1, filename="best-{epoch:02d}-{val_acc:.4f}",
        auto_insert_metric_name=False,
    )
    show_bar = tc.progress_bar and sys.stdout.isatty()  # rich draws on stdout; in a log file it is noise
    trainer = pl.Trainer(
        accelerator=tc.accelerator,
        devices=tc.devices,
        num_nodes=tc.num_nodes,
        strategy=tc.strategy,
        precision=tc.precision,  # type: ignore[arg-type]
        max_epochs=tc.max_epochs,
        deterministic=tc.deterministic,
        default_root_dir=tc.log_dir,
        logger=CSVLogger(save_dir=tc.log_dir, name=cfg.publish.name),
        callbacks=[checkpoint, _progress(show_bar)],
        enable_progress_bar=show_bar,
        enable_model_summary=tc.progress_bar,
    )
    steps_per_epoch = len(data.train) // (cfg.data.batch_size * trainer.world_size)
    # The world size is only known once the Trainer has resolved devices; Lightning reads this attribute.
    trainer.log_every_n_steps = max(1, min(50, steps_per_epoch))  # type: ignore[attr-defined]
    started = time.perf_counter()
    with warnings.catch_warnings():
        # num_workers=0 is deliberate: the splits are in memory and workers cost start-up time on small machines.
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # Lightning 2.6 still builds torch's deprecated LeafSpec; nothing a user of the trainer can change.
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
            module=r"pytorch_lightning\.utilities\._pytree",
        )
        trainer.fit(lit, datamodule=datamodule)
    seconds = time.perf_counter() - started
    # Everything below is local to this process: no Lightning calls that would need the other ranks.
    c, h, w = data.preprocess.channels, *data.preprocess.resize
    if not trainer.is_global_zero:
        empty = np.zeros((0, c, h, w), dtype=np.float32)
        return TrainResult(
            model=lit.model.cpu().eval(), labels=data.classes, preprocess=data.preprocess, input_shape=(c, h, w),
            dataset=data.info, metrics={}, test_inputs=empty, test_labels=np.zeros(0, dtype=np.int64),
            calib_inputs=empty, is_global_zero=False, best_checkpoint=None,
            global_rank=trainer.global_rank, world_size=trainer.world_size,
        )
    return _finish_rank_zero(cfg, data, lit, trainer, checkpoint, seconds)


def _finish_rank_zero(
    cfg: TrainConfig,
    data: PreparedData,
    lit: LitClassifier,
    trainer: pl.Trainer,
    checkpoint: ModelCheckpoint,
    seconds: float,
) -> TrainResult:
    last = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    best_path = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    best_epoch = float(trainer.current_epoch)
    if best_path is not None:
        state = _load_checkpoint(best_path)
        lit.load_state_dict(state["state_dict"])
        best_epoch = float(state.get("epoch", best_epoch))
    else:
        log.warning("no checkpoint was saved (validation never ran); using the final weights")
    model = lit.model.cpu().eval()
    spec = data.preprocess
    test_inputs = normalize(data.test.pixels, spec)
    test_labels = data.test.labels.astype(np.int64)
    test_acc, test_loss = evaluate(model, test_inputs, test_labels)
    picks = np.random.default_rng(cfg.trainer.seed).permutation(len(data.train))[: cfg.export.calibration_samples]
    calib_inputs = normalize(data.train.pixels[np.sort(picks)], spec)
    best_score = checkpoint.best_model_score
    metrics = {
        "val_acc": float(best_score) if best_score is not None else last.get("val_acc", float("nan")),
        "val_loss": last.get("val_loss", float("nan")),
        "train_loss": last.get("train_loss_epoch", float("nan")),
        "train_acc": last.get("train_acc", float("nan")),
        "test_acc": test_acc,
        "test_loss": test_loss,
        "epochs": float(trainer.current_epoch),
        "best_epoch": best_epoch + 1,
        "train_seconds": round(seconds, 2),
        "world_size": float(trainer.world_size),
    }
    log.info(
        "trained %s in %.1f s: best val_acc=%.4f (epoch %d), test_acc=%.4f on %d held-out images",
        cfg.model.arch, seconds, metrics["val_acc"], int(metrics["best_epoch"]), test_acc, len(test_labels),
    )
    return TrainResult(
        model=model, labels=data.classes, preprocess=spec, input_shape=(spec.channels, *spec.resize),
        dataset=data.info, metrics=metrics, test_inputs=test_inputs, test_labels=test_labels,
        calib_inputs=calib_inputs, is_global_zero=True, best_checkpoint=best_path,
        global_rank=trainer.global_rank, world_size=trainer.world_size,
        log_dir=best_path.parent.parent if best_path is not None else None,
    )


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise CloudError(f"cannot load the best checkpoint {path}: {exc}") from exc
    return state


def evaluate(model: nn.Module, inputs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy of an eval-mode model on preprocessed inputs, with plain torch."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    correct = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for start in range(0, len(labels), _EVAL_BATCH):
            x = torch.from_numpy(inputs[start : start + _EVAL_BATCH])
            y = torch.from_numpy(labels[start : start + _EVAL_BATCH])
            logits = model(x)
            correct += int((logits.argmax(dim=1) == y).sum())
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
    return correct / len(labels), loss_sum / len(labels)


def _summary(result: TrainResult) -> dict[str, Any]:
    return {
        "metrics": result.metrics,
        "labels": result.labels,
        "input_shape": list(result.input_shape),
        "preprocess": result.preprocess.model_dump(mode="json"),
        "dataset": result.dataset.model_dump(mode="json"),
        "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
        "world_size": result.world_size,
        "num_test": len(result.test_labels),
        "num_calib": len(result.calib_inputs),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m cloud.train --config FILE [--set k=v] [--result out.json]`: training only (DDP-launchable)."""
    from shared.config_loader import load_config

    parser = argparse.ArgumentParser(prog="python -m cloud.train", description=main.__doc__)
    parser.add_argument("--config", type=Path, help="YAML training config")
    parser.add_argument("--devices", help="devices per node (int or auto)")
    parser.add_argument("--num-nodes", type=int, help="nodes for multi-node DDP")
    parser.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    parser.add_argument("--accelerator", help="cpu, gpu or auto")
    parser.add_argument("--set", dest="pairs", action="append", default=[], help="override, e.g. trainer.lr=1e-3")
    parser.add_argument(
        "--result", help="rank 0 writes metrics and data set identity here as JSON ({rank} is replaced by the rank)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        flags: dict[str, Any] = {
            "trainer.devices": int(args.devices) if args.devices and args.devices.isdigit() else args.devices,
            "trainer.num_nodes": args.num_nodes,
            "trainer.strategy": args.strategy,
            "trainer.accelerator": args.accelerator,
        }
        for pair in args.pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise CloudError(f"--set expects key=value, got {pair!r}")
            flags[key.strip()] = yaml.safe_load(raw) if raw else ""
        result = train(load_config(TrainConfig, args.config, flags))
    except EdgeferryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("rank %d of %d finished training", result.global_rank, result.world_size)
    if result.is_global_zero and args.result:
        out = Path(args.result.replace("{rank}", str(result.global_rank)))
        out.write_text(json.dumps(_summary(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
