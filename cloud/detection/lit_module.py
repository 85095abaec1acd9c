"""The Lightning module that trains the CenterNet detector: focal loss on heatmaps, L1 on size and offset."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from cloud.detection.losses import focal_loss, gathered_l1
from cloud.detection.model import CenterNet
from cloud.detection.schedule import Budget, BudgetedProgress

SIZE_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0


class LitDetector(pl.LightningModule):
    """Wraps CenterNet (channels-last: oneDNN's fast conv layout on CPU); AdamW with a one-cycle schedule."""

    def __init__(self, num_classes: int, in_channels: int, width: int, lr: float, weight_decay: float,
                 budgets: tuple[Budget, ...] = ()) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["budgets"])
        self.model = CenterNet(num_classes, in_channels, width)
        self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs omit the keyword
        self.lr = lr
        self.weight_decay = weight_decay
        self.budgets = budgets
        self.progress: BudgetedProgress | None = None

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        heat, size, offset = self.model(batch["image"].contiguous(memory_format=torch.channels_last))
        heat, size, offset = heat.float(), size.float(), offset.float()  # losses in FP32 under bf16 autocast
        hm = focal_loss(heat, batch["heatmap"])
        wh = gathered_l1(size, batch["index"], batch["size"], batch["mask"])
        off = gathered_l1(offset, batch["index"], batch["offset"], batch["mask"])
        return {"loss": hm + SIZE_WEIGHT * wh + OFFSET_WEIGHT * off, "hm": hm, "wh": wh, "off": off}

    def on_train_start(self) -> None:
        """Budgets count from the first training step, not from set-up."""
        if self.progress is not None:
            self.progress.start()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Stop once a time budget is spent (the schedule has annealed by then); the step's scheduler reading is
        reused, global_step being the step LambdaLR was just stepped to."""
        if self.progress is not None and self.progress.spent(self.trainer.global_step) >= 1.0:
            self.trainer.should_stop = True

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
        """AdamW + one-cycle over the run's steps, or over its time budget when that runs out first."""
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.progress = BudgetedProgress(int(self.trainer.estimated_stepping_batches), self.budgets)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.progress.lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
