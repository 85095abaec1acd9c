"""Detection splits for training: seeded synthetic scenes, or a user's COCO set letterboxed to the model input."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud.config import DataConfig
from cloud.datasets import decode_rgb
from cloud.detection.coco import CocoSet, load_coco
from cloud.detection.config import DetectionConfig
from cloud.detection.samples import DetectionSplit
from cloud.detection.scenes import CLASSES, SceneSpec
from cloud.detection.synthetic import SYNTHETIC_NAME, generate_split, split_digest
from cloud.errors import DataError
from cloud.preprocessing import SCALE, fit_preprocess, to_model_pixels
from shared.manifest import DatasetInfo, Preprocess
from shared.preprocessing import boxes_to_input, letterbox_geometry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionData:
    """Train/val/test splits at model size, class names, the recipe a device applies, and the data identity."""

    train: DetectionSplit
    val: DetectionSplit
    test: DetectionSplit
    classes: list[str]
    preprocess: Preprocess
    info: DatasetInfo


def scene_spec(cfg: DetectionConfig) -> SceneSpec:
    """The synthetic scene look the config asks for."""
    if cfg.min_objects > cfg.max_objects_per_scene or cfg.min_scale > cfg.max_scale:
        raise DataError("detection: min_objects/min_scale must not exceed max_objects_per_scene/max_scale")
    if min(cfg.image_size) <= cfg.max_scale:
        raise DataError(f"detection.max_scale {cfg.max_scale} does not fit the {cfg.image_size} input")
    return SceneSpec(
        size=cfg.image_size, min_objects=cfg.min_objects, max_objects=cfg.max_objects_per_scene,
        min_scale=cfg.min_scale, max_scale=cfg.max_scale, noise=cfg.noise, classes=CLASSES,
    )


def _check_size(cfg: DetectionConfig) -> None:
    if any(s % 16 or s < 32 for s in cfg.image_size):
        raise DataError(f"detection.image_size {cfg.image_size} must be multiples of 16, at least 32")


def synthetic_data(cfg: DetectionConfig, seed: int) -> DetectionData:
    """Seeded train/val/test scenes; the test split draws digits no training scene uses."""
    _check_size(cfg)
    spec = scene_spec(cfg)
    train = generate_split("train", cfg.train_scenes, seed, spec)
    val = generate_split("val", cfg.val_scenes, seed, spec)
    test = generate_split("test", cfg.test_scenes, seed, spec)
    classes = list(CLASSES)
    info = DatasetInfo(
        name=SYNTHETIC_NAME, sha256=split_digest(classes, [train, val, test]),
        num_train=len(train), num_val=len(val), num_test=len(test),
    )
    return DetectionData(train, val, test, classes, _recipe(train, cfg), info)


def _recipe(train: DetectionSplit, cfg: DetectionConfig) -> Preprocess:
    fitted = fit_preprocess(train.images, cfg.image_size, "rgb")
    return Preprocess(
        resize=cfg.image_size, channel_order="rgb", scale=SCALE, mean=fitted.mean, std=fitted.std,
        layout="NCHW", resize_mode="letterbox", pad_value=cfg.pad_value,
    )


def _read(path: Path, coco: CocoSet, cfg: DetectionConfig) -> np.ndarray:
    try:
        rgb, _ = decode_rgb(path)
    except DataError as exc:
        raise DataError(f"{path}: cannot decode image named in {coco.annotations.name}: {exc.__cause__}") from exc
    return rgb


def coco_data(root: Path, data: DataConfig, cfg: DetectionConfig, seed: int) -> DetectionData:
    """A COCO set read whole (checked before anything is decoded), split by image, letterboxed to the input."""
    _check_size(cfg)
    coco = load_coco(root)
    n = len(coco.images)
    if n < 3:
        raise DataError(f"{coco.annotations}: {n} images cannot make train/val/test splits; add images")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * data.test_fraction))
    n_val = max(1, round(n * data.val_fraction))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    if len(parts["train"]) == 0:
        raise DataError(f"{coco.annotations}: no images left for training after the val/test split")
    h, w = cfg.image_size
    images = np.empty((n, h, w, 3), dtype=np.uint8)
    boxes: list[np.ndarray] = []
    for i, item in enumerate(coco.images):
        rgb = _read(item.path, coco, cfg)
        if rgb.shape[:2] != (item.height, item.width):
            raise DataError(f"{coco.annotations}: image {item.path.name} is {rgb.shape[1]}x{rgb.shape[0]}, "
                            f"the file says {item.width}x{item.height}")
        images[i] = to_model_pixels(rgb, cfg.image_size, "rgb", "letterbox", cfg.pad_value)
        geometry = letterbox_geometry((item.height, item.width), cfg.image_size)
        boxes.append(boxes_to_input(item.boxes, geometry).astype(np.float32))
    every = DetectionSplit(images, boxes, [i.classes for i in coco.images])
    splits = {k: every.subset(np.sort(v)) for k, v in parts.items()}
    info = DatasetInfo(
        name=str(root), sha256=split_digest(coco.classes, [every]),
        num_train=len(splits["train"]), num_val=len(splits["val"]), num_test=len(splits["test"]),
    )
    log.info("data %s: %d classes, train/val/test %d/%d/%d", root, len(coco.classes), info.num_train,
             info.num_val, info.num_test)
    return DetectionData(
        splits["train"], splits["val"], splits["test"], coco.classes, _recipe(splits["train"], cfg), info
    )


def prepare_detection_data(data: DataConfig, cfg: DetectionConfig, seed: int) -> DetectionData:
    """COCO at data.dir when the source is a directory (--data DIR), else the synthetic scenes."""
    if data.source in ("folder", "coco"):
        if data.dir is None:
            raise DataError("data.source names a directory but data.dir is not set (pass --data DIR)")
        return coco_data(data.dir, data, cfg, seed)
    return synthetic_data(cfg, seed)
