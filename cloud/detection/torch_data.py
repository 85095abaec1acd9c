"""Torch datasets and the Lightning data module for detection: normalised images and CenterNet targets."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from cloud.detection.model import STRIDE
from cloud.detection.samples import DetectionSplit
from cloud.detection.targets import encode
from shared.manifest import Preprocess
from shared.preprocessing import normalize


class TargetDataset(Dataset[dict[str, torch.Tensor]]):
    """A split as (normalised image, heatmap, size, offset, index, mask) per sample."""

    def __init__(self, split: DetectionSplit, spec: Preprocess, num_classes: int, max_objects: int) -> None:
        self.split = split
        self.spec = spec
        self.num_classes = num_classes
        self.max_objects = max_objects
        h, w = split.images.shape[1:3]
        self.out_hw = (h // STRIDE, w // STRIDE)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        t = encode(self.split.boxes[i], self.split.classes[i], self.num_classes, self.out_hw, STRIDE, self.max_objects)
        return {
            "image": torch.from_numpy(normalize(self.split.images[i], self.spec)),
            "heatmap": torch.from_numpy(t.heatmap),
            "size": torch.from_numpy(t.size),
            "offset": torch.from_numpy(t.offset),
            "index": torch.from_numpy(t.index),
            "mask": torch.from_numpy(t.mask),
        }


class DetectionDataModule(pl.LightningDataModule):
    """Train and val loaders over in-memory splits (no workers: the splits are small and workers cost start-up)."""

    def __init__(
        self, train: DetectionSplit, val: DetectionSplit, spec: Preprocess, num_classes: int, batch_size: int,
        max_objects: int, seed: int,
    ) -> None:
        super().__init__()
        self.train_set = TargetDataset(train, spec, num_classes, max_objects)
        self.val_set = TargetDataset(val, spec, num_classes, max_objects)
        self.batch_size = batch_size
        self.seed = seed

    def train_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """Shuffled by a seeded generator, so runs repeat."""
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=gen)

    def val_dataloader(self) -> DataLoader[dict[str, torch.Tensor]]:
        """In order."""
        return DataLoader(self.val_set, batch_size=self.batch_size)


def image_batches(images: np.ndarray, spec: Preprocess, batch: int) -> list[np.ndarray]:
    """uint8 images -> normalised float32 NCHW batches, as a device computes them."""
    return [normalize(images[i : i + batch], spec) for i in range(0, len(images), batch)]
