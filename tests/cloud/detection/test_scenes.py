"""Synthetic scenes: the same seed gives the same scene, and every box tightly holds its object."""

from __future__ import annotations

import numpy as np

from cloud.detection.scenes import CLASSES, SceneSpec, background, digit_pool, make_scene, split_seed
from cloud.detection.synthetic import generate_split, split_digest


def test_same_seed_same_scene_and_other_seeds_differ() -> None:
    a, b, c = make_scene(7), make_scene(7), make_scene(8)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.classes, b.classes)
    assert not np.array_equal(a.image, c.image)


def test_splits_are_reproducible_and_never_share_a_scene() -> None:
    spec = SceneSpec(size=(64, 64), max_scale=30)
    first = generate_split("train", 6, 3, spec)
    again = generate_split("train", 6, 3, spec)
    assert split_digest(list(CLASSES), [first]) == split_digest(list(CLASSES), [again])
    seeds = {split_seed(3, s, i) for s in ("train", "val", "test") for i in range(50)}
    assert len(seeds) == 150


def test_test_scenes_use_digit_instances_training_never_sees() -> None:
    for digit in range(10):
        assert not set(digit_pool(digit, "test")) & set(digit_pool(digit, "train"))


def test_each_box_is_inside_the_image_and_tight_around_its_object() -> None:
    spec = SceneSpec(noise=0.0)
    checked = 0
    for seed in range(40):
        scene = make_scene(seed, spec)
        h, w = spec.size
        assert scene.image.shape == (h, w, 3) and scene.image.dtype == np.uint8
        assert len(scene.boxes) == len(scene.classes) >= spec.min_objects
        assert ((scene.classes >= 0) & (scene.classes < len(CLASSES))).all()
        # The background is the scene's first draw from its seed: what differs from it is objects (or the bar).
        bg = np.clip(np.rint(background(np.random.default_rng(seed), h, w)), 0, 255)
        ink = np.abs(scene.image.astype(np.float64) - bg).max(axis=2) > 20
        for x0, y0, x1, y1 in scene.boxes.astype(int):
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert spec.min_scale * 0.4 <= max(x1 - x0, y1 - y0) <= spec.max_scale
            inside = ink[y0:y1, x0:x1]
            # Tight: the object's ink reaches every edge of its box.
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            checked += 1
    assert checked > 60
