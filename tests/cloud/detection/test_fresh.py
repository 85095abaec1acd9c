"""Fresh training scenes: every epoch new ones, the same ones again for the same seed, never a val/test scene."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch.utils.data import DataLoader

from cloud.detection.fresh import FreshScenes, fresh_seed
from cloud.detection.scenes import SceneSpec, make_scene, split_seed
from shared.manifest import Preprocess

SPEC = SceneSpec(size=(64, 64), max_scale=30, min_scale=12)
RECIPE = Preprocess(resize=(64, 64), channel_order="rgb", scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                    layout="NCHW")


def epoch_images(data: FreshScenes) -> torch.Tensor:
    return torch.stack([s["image"] for s in data])


def test_each_pass_draws_new_scenes_and_a_rerun_draws_the_same_ones() -> None:
    first = FreshScenes(SPEC, 6, seed=5, preprocess=RECIPE, num_classes=13, max_objects=8)
    a0, a1 = epoch_images(first), epoch_images(first)
    again = FreshScenes(SPEC, 6, seed=5, preprocess=RECIPE, num_classes=13, max_objects=8)
    b0, b1 = epoch_images(again), epoch_images(again)
    assert a0.shape == (6, 3, 64, 64) and len(first) == 6
    assert torch.equal(a0, b0) and torch.equal(a1, b1)
    assert not any(torch.equal(x, y) for x in a0 for y in a1)  # no scene of epoch 1 repeats in epoch 2


def test_samples_carry_targets_for_their_objects() -> None:
    sample = next(iter(FreshScenes(SPEC, 2, seed=1, preprocess=RECIPE, num_classes=13, max_objects=8)))
    assert sample["heatmap"].shape == (13, 16, 16) and float(sample["heatmap"].max()) == 1.0
    assert float(sample["mask"].sum()) >= SPEC.min_objects


def test_fresh_seeds_never_collide_with_the_fixed_splits() -> None:
    fixed = {split_seed(42, s, i) for s in ("train", "val", "test") for i in range(300)}
    fresh = {fresh_seed(42, epoch, i) for epoch in range(10) for i in range(300)}
    assert len(fresh) == 3000 and not fixed & fresh
    assert np.unique([fresh_seed(42, 0, i) for i in range(100)]).size == 100


def loader_epochs(workers: int, seed: int) -> list[torch.Tensor]:
    make_scene(0, SPEC)  # digits loaded here once; forked workers inherit them instead of each parsing the CSV
    data = FreshScenes(SPEC, 4, seed=5, preprocess=RECIPE, num_classes=13, max_objects=8)
    loader = DataLoader(data, batch_size=2, num_workers=workers, generator=torch.Generator().manual_seed(seed))
    return [torch.cat([b["image"] for b in loader]) for _ in range(2)]


def test_loader_workers_draw_new_scenes_each_epoch_and_repeat_for_the_same_seed() -> None:
    # Loader workers run in a child of a fresh (spawned) process: a DataLoader with workers leaves torch's SIGCHLD
    # handler in the process that ran it, and in the test runner that handler later crashed it (SIGSEGV).
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        first, again = pool.submit(loader_epochs, 2, 7).result(), pool.submit(loader_epochs, 2, 7).result()
    assert first[0].shape == (4, 3, 64, 64)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], first[1])
    # Two workers share one pass: each scene of the pass comes once, none twice.
    assert len({x.numpy().tobytes() for x in first[0]}) == 4
