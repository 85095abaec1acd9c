"""What a user's own ImageFolder looks like (colour, image size, classes) and the network and input that fit it.

`edgeferry train --data DIR` used to train the 28x28 gray digits network on any folder. Now the options the user did
not set (model.arch, model.width, data.image_size, data.channels) are chosen from a sample of the images, and one
log line says what was chosen and why; options the user set are kept, and the line says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from cloud.config import TrainConfig
from cloud.datasets import image_files

log = logging.getLogger(__name__)

# Images opened per class to judge colour and size: enough for a median, cheap on a big folder.
SAMPLE_PER_CLASS = 24
# A pixel's chroma is max - min over R, G, B (0-255); gray images saved as RGB (or JPEG) stay within a few levels.
COLOUR_CHROMA = 12.0
# Share of sampled images with colour above which the data set is trained in colour.
COLOUR_SHARE = 0.2
# Square input sides the choice picks from: the smallest at least the images' median shorter side, at most 224.
SIDES = (28, 32, 48, 64, 96, 128, 160, 224)
# Up to this side the small CNN fits (its dense head grows with the side); above it MobileNetV2 (global pooling).
SMALL_NET_MAX_SIDE = 64
# Past this many classes the small CNN gets twice the channels.
WIDE_CLASSES = 20
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


@dataclass(frozen=True)
class DataProfile:
    """Figures of a sample of an ImageFolder's images."""

    classes: int
    sampled: int
    median_hw: tuple[int, int]
    colour_share: float

    @property
    def channels(self) -> Literal["gray", "rgb"]:
        """RGB when a fair share of the images carry colour."""
        return "rgb" if self.colour_share >= COLOUR_SHARE else "gray"

    @property
    def side(self) -> int:
        """Square input side: the smallest of SIDES at least the median shorter side (224 beyond)."""
        shorter = min(self.median_hw)
        return next((s for s in SIDES if s >= shorter), SIDES[-1])


@dataclass(frozen=True)
class Choice:
    """Network and input for a data set, and the one line that says so."""

    arch: Literal["digits_cnn", "mobilenetv2"]
    width: float
    image_size: tuple[int, int]
    channels: Literal["gray", "rgb"]


def profile_folder(root: Path) -> DataProfile | None:
    """Sample each class folder's images (sorted, evenly spaced); None when nothing is readable (load_folder says
    why in its own words)."""
    root = Path(root)
    if not root.is_dir():
        return None
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    sizes: list[tuple[int, int]] = []
    colourful = 0
    for folder in classes:
        files = image_files(folder)
        if not files:
            continue
        step = max(1, len(files) // SAMPLE_PER_CLASS)
        for path in files[::step][:SAMPLE_PER_CLASS]:
            seen = _look(path)
            if seen is None:
                continue
            hw, colour = seen
            sizes.append(hw)
            colourful += colour
    if not sizes:
        return None
    hs, ws = zip(*sizes, strict=True)
    median = (int(np.median(hs)), int(np.median(ws)))
    return DataProfile(len(classes), len(sizes), median, colourful / len(sizes))


def _look(path: Path) -> tuple[tuple[int, int], bool] | None:
    """(height, width) and whether the image carries colour; None when it cannot be read (training skips it)."""
    try:
        with Image.open(path) as img:
            hw = (img.height, img.width)
            if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return hw, False
            img.draft("RGB", (64, 64))  # JPEG: decode at a fraction of the size
            small = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.NEAREST), dtype=np.int16)
    except _UNREADABLE:
        return None
    chroma = small.max(axis=2) - small.min(axis=2)
    return hw, float(chroma.mean()) > COLOUR_CHROMA


def choose(profile: DataProfile) -> Choice:
    """The network and input that fit: small images -> the small CNN at their size, larger ones -> MobileNetV2."""
    side = profile.side
    if side <= SMALL_NET_MAX_SIDE:
        width = 2.0 if profile.classes > WIDE_CLASSES else 1.0
        return Choice("digits_cnn", width, (side, side), profile.channels)
    return Choice("mobilenetv2", 1.0, (side, side), profile.channels)


def fit_to_data(cfg: TrainConfig) -> TrainConfig:
    """cfg with the options the user left unset chosen for a folder data set; logs one line either way."""
    if cfg.data.source != "folder" or cfg.data.dir is None:
        return cfg
    profile = profile_folder(cfg.data.dir)
    if profile is None:
        return cfg  # load_folder reports the missing or empty folder in one line
    choice = choose(profile)
    model_set, data_set = cfg.model.model_fields_set, cfg.data.model_fields_set
    model_update: dict[str, Any] = {}
    data_update: dict[str, Any] = {}
    if "arch" not in model_set:
        model_update["arch"] = choice.arch
        if "width" not in model_set:
            model_update["width"] = choice.width
    if "image_size" not in data_set:
        data_update["image_size"] = choice.image_size
    if "channels" not in data_set:
        data_update["channels"] = choice.channels
    fitted = cfg.model_copy(update={
        "model": cfg.model.model_copy(update=model_update),
        "data": cfg.data.model_copy(update=data_update),
    })
    chosen = {"model.arch": "arch" in model_update, "data.image_size": "image_size" in data_update,
              "data.channels": "channels" in data_update}
    kept = [k for k, was_chosen in chosen.items() if not was_chosen]
    h, w = fitted.data.image_size
    log.info(
        "data %s: %d classes, images about %dx%d, %s (%d sampled) -> training %s (width %g) on %dx%d %s%s",
        cfg.data.dir, profile.classes, profile.median_hw[1], profile.median_hw[0],
        "colour" if profile.channels == "rgb" else "gray", profile.sampled, fitted.model.arch, fitted.model.width,
        w, h, fitted.data.channels,
        f" ({', '.join(kept)} as configured; the data suggests {choice.arch} {choice.image_size[1]}x"
        f"{choice.image_size[0]} {choice.channels})" if kept else "",
    )
    return fitted
