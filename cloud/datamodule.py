"""LightningDataModule over prepared splits: batches are normalized with the device recipe, augmented on train only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cloud.augment import random_shift_rotate
from cloud.datasets import PreparedData, Split
from cloud.preprocessing import normalize
from shared.manifest import Preprocess


class SplitDataset(Dataset[tuple[np.ndarray, int]]):
    """Model pixels and labels of one split; normalization happens per batch in the collate step."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.split.pixels[index], int(self.split.labels[index])


class NormalizeCollate:
    """Stack uint8 HWC samples and apply the manifest's normalization (a class so worker processes can pickle it)."""

    def __init__(self, spec: Preprocess) -> None:
        self.spec = spec

    def __call__(self, samples: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = np.stack([s[0] for s in samples])
        labels = np.asarray([s[1] for s in samples], dtype=np.int64)
        return torch.from_numpy(normalize(pixels, self.spec)), torch.from_numpy(labels)


class ImageDataModule(pl.LightningDataModule):
    """Serves the prepared train/val/test splits; Lightning adds a DistributedSampler under DDP."""

    def __init__(self, data: PreparedData, batch_size: int, num_workers: int = 0, augment: bool = True) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self._collate = NormalizeCollate(data.preprocess)

    def _loader(self, split: Split, shuffle: bool) -> DataLoader[Any]:
        return DataLoader(
            SplitDataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=self._collate,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.data.train, shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.data.val, shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.data.test, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment on the device, only while training (never val, test or calibration)."""
        if self.augment and self.trainer is not None and self.trainer.training:
            images, labels = batch
            return random_shift_rotate(images), labels
        return batch
