"""DataModule: batches carry the device normalization; augmentation touches training batches only."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from cloud.augment import random_shift_rotate
from cloud.datamodule import ImageDataModule
from cloud.datasets import PreparedData, Split
from cloud.preprocessing import normalize
from shared.manifest import DatasetInfo, Preprocess


@pytest.fixture
def data() -> PreparedData:
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        return Split(rng.integers(0, 256, (n, 12, 12, 1), dtype=np.uint8), rng.integers(0, 3, n).astype(np.int64))

    spec = Preprocess(resize=(12, 12), channel_order="gray", scale=1 / 255, mean=[0.5], std=[0.25])
    info = DatasetInfo(name="t", sha256="0" * 64, num_train=20, num_val=6, num_test=6)
    return PreparedData(split(20), split(6), split(6), ["a", "b", "c"], spec, info)


def test_val_batches_are_exactly_the_normalized_pixels(data: PreparedData) -> None:
    dm = ImageDataModule(data, batch_size=4)
    images, labels = next(iter(dm.val_dataloader()))
    assert images.dtype == torch.float32 and images.shape == (4, 1, 12, 12)
    np.testing.assert_array_equal(images.numpy(), normalize(data.val.pixels[:4], data.preprocess))
    np.testing.assert_array_equal(labels.numpy(), data.val.labels[:4])


def test_augmentation_only_while_training(data: PreparedData) -> None:
    dm = ImageDataModule(data, batch_size=8, augment=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    dm.trainer = trainer
    batch = next(iter(dm.val_dataloader()))
    trainer.validating = True
    assert dm.on_after_batch_transfer(batch, 0)[0] is batch[0]
    trainer.training = True
    augmented, labels = dm.on_after_batch_transfer(batch, 0)
    assert augmented.shape == batch[0].shape
    assert not torch.equal(augmented, batch[0])
    assert torch.equal(labels, batch[1])


def test_augmentation_off_leaves_training_batches_alone(data: PreparedData) -> None:
    dm = ImageDataModule(data, batch_size=8, augment=False)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    dm.trainer = trainer
    trainer.training = True
    batch = next(iter(dm.train_dataloader()))
    assert dm.on_after_batch_transfer(batch, 0)[0] is batch[0]


def test_shift_rotate_is_small_and_seeded() -> None:
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 1.0
    same = random_shift_rotate(x, max_shift=0.0, max_degrees=0.0)
    torch.testing.assert_close(same, x)
    a = random_shift_rotate(x, generator=torch.Generator().manual_seed(1))
    b = random_shift_rotate(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, x)
    # A small move keeps the stroke's mass (nothing is pushed out of a 28x28 frame by <= 10%).
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.15, atol=0)
