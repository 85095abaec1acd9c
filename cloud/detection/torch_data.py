"""Torch datasets and the Lightning data module for detection: normalised images and CenterNet targets."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cloud.detection.fresh import FreshScenes, sample_dict
from cloud.detection.samples import DetectionSplit
from shared.manifest import Preprocess
from shared.preprocessing import normalize


class TargetDataset(Dataset[dict[str, torch.Tensor]]):
    """A split as (normalised image, heatmap, size, offset, index, mask) per sample."""

    def __init__(self, split: DetectionSplit, spec: Preprocess, num_classes: int, max_objects: int) -> None:
        self.split = split
        self.spec = spec
        self.num_classes = num_classes
        self.max_objects = max_objects

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s = self.split
        return sample_dict(s.images[i], s.boxes[i], s.classes[i], self.spec, self.num_classes, self.max_objects)


class DetectionDataModule(pl.LightningDataModule):
    """Train and val loaders: a fixed split shuffled, or fresh scenes each epoch (optionally made by workers)."""

    def __init__(
        self, train: DetectionSplit, val: DetectionSplit, spec: Preprocess, num_classes: int, batch_size: int,
        max_objects: int, seed: int, fresh: FreshScenes | None = None, workers: int = 0,
    ) -> None:
        super().__init__()
        self.train_set = TargetDataset(train, spec, num_classes, max_objects)
        self.val_set = TargetDataset(val, spec, num_classes, max_objects)
        self.fresh = fresh
        self.workers = workers if fresh is not None else 0
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Fresh scenes in seed order, or the fixed split shuffled by a seeded generator; either way runs repeat."""
        gen = torch.Generator().manual_seed(self.seed)
        if self.fresh is not None:
            return DataLoader(self.fresh, batch_size=self.batch_size, drop_last=True, generator=gen,
                              num_workers=self.workers, persistent_workers=False)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=gen)

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """In order."""
        return DataLoader(self.val_set, batch_size=self.batch_size)


def image_batches(images: np.ndarray, spec: Preprocess, batch: int) -> list[np.ndarray]:
    """uint8 images -> normalised float32 NCHW batches, as a device computes them."""
    return [normalize(images[i : i + batch], spec) for i in range(0, len(images), batch)]
