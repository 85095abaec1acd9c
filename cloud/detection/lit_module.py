"""The Lightning module that trains the CenterNet detector: focal loss on heatmaps, L1 on size and offset."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from cloud.detection.losses import focal_loss, gathered_l1
from cloud.detection.model import CenterNet

SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0


class LitDetector(pl.LightningModule):
    """Wraps CenterNet; AdamW with a one-cycle schedule over the whole run."""

    def __init__(self, num_classes: int, in_channels: int, width: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = CenterNet(num_classes, in_channels, width)
        self.lr = lr
        self.weight_decay = weight_decay

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        heat, size, offset = self.model(batch["image"])
        hm = focal_loss(heat, batch["heatmap"])
        wh = gathered_l1(size, batch["index"], batch["size"], batch["mask"])
        off = gathered_l1(offset, batch["index"], batch["offset"], batch["mask"])
        return {"loss": hm + SIZE_WEIGHT * wh + OFFSET_WEIGHT * off, "hm": hm, "wh": wh, "off": off}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step."""
        losses = self._losses(batch)
        bs = batch["image"].shape[0]
        self.log("train_loss", losses["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        return losses["loss"]

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Validation loss; mAP is computed once on the test split after training, where it is gated."""
        losses = self._losses(batch)
        bs = batch["image"].shape[0]
        self.log("val_loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log("val_hm_loss", losses["hm"], batch_size=bs)

    def configure_optimizers(self) -> Any:
        """AdamW + one-cycle."""
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=max(total, 1), pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
