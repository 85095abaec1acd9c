"""LightningModules for the two sensor tasks; `self.model` is the plain torch module that gets exported."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from cloud.sensor.models import ChannelErrors, ConvAutoencoder, SensorCNN


class _OneCycle(pl.LightningModule):
    def configure_optimizers(self) -> Any:
        lr = float(self.hparams["lr"])
        optimizer = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=float(self.hparams["weight_decay"]))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=max(1, int(self.trainer.estimated_stepping_batches))
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class LitSensorClassifier(_OneCycle):
    """Cross-entropy on labelled windows; val_acc picks the checkpoint."""

    def __init__(self, channels: int, classes: int, width: int, dropout: float, lr: float, weight_decay: float
                 ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = SensorCNN(channels, classes, width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, prog_bar=True)
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean(), on_epoch=True, prog_bar=True)


class LitAutoencoder(_OneCycle):
    """Mean squared reconstruction error on normal windows; the lowest val_loss picks the checkpoint."""

    def __init__(self, channels: int, length: int, width: int, latent: int, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = ChannelErrors(ConvAutoencoder(channels, length, width, latent))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(batch[0]).mean()
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.model(batch[0]).mean(), on_epoch=True, prog_bar=True)
