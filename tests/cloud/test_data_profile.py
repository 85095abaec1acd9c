"""`edgeferry train --data DIR` fits the network and input to the data (colour, image size, class count) and says
which it uses; options the user set are kept."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloud.config import TrainConfig
from cloud.data_profile import fit_to_data, profile_folder
from shared.config_loader import load_config


def make_folder(root: Path, classes: int, size: tuple[int, int], colour: bool, per_class: int = 6) -> Path:
    """An ImageFolder of noise images, (width, height) size, RGB or gray."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            if colour:
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            else:  # gray content saved as RGB, as cameras and converters often do
                pixels = np.repeat(rng.integers(0, 256, (size[1], size[0], 1), dtype=np.uint8), 3, axis=2)
            Image.fromarray(pixels).save(root / f"class{c:02d}" / f"{i}.png")
    return root


def _cfg(data: Path, path: Path | None = None, flags: dict[str, object] | None = None) -> TrainConfig:
    return load_config(TrainConfig, path, {"data.source": "folder", "data.dir": str(data), **(flags or {})}, {})


@pytest.mark.parametrize(
    ("classes", "size", "colour", "arch", "width", "side", "channels"),
    [
        (3, (28, 28), False, "digits_cnn", 1.0, 28, "gray"),  # digits-like
        (4, (32, 32), True, "digits_cnn", 1.0, 32, "rgb"),  # CIFAR-like
        (25, (40, 30), False, "digits_cnn", 2.0, 32, "gray"),  # many classes: a wider small network
        (2, (120, 90), True, "mobilenetv2", 1.0, 96, "rgb"),  # camera crops
        (2, (640, 480), True, "mobilenetv2", 1.0, 224, "rgb"),  # photos
    ],
)
def test_the_network_and_input_fit_the_data(
    tmp_path: Path, classes: int, size: tuple[int, int], colour: bool, arch: str, width: float, side: int,
    channels: str, caplog: pytest.LogCaptureFixture,
) -> None:
    data = make_folder(tmp_path / "data", classes, size, colour, per_class=3)
    with caplog.at_level(logging.INFO, logger="cloud.data_profile"):
        cfg = fit_to_data(_cfg(data))
    assert (cfg.model.arch, cfg.model.width, cfg.data.image_size, cfg.data.channels) == (
        arch, width, (side, side), channels)
    line = caplog.messages[-1]
    assert f"training {arch}" in line and f"{side}x{side} {channels}" in line and f"{classes} classes" in line


def test_options_the_user_set_are_kept_and_the_line_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = make_folder(tmp_path / "data", 2, (64, 64), True, per_class=3)
    with caplog.at_level(logging.INFO, logger="cloud.data_profile"):
        cfg = fit_to_data(_cfg(data, Path("configs/train-default.yaml")))  # names digits_cnn, 28x28, gray
    assert (cfg.model.arch, cfg.data.image_size, cfg.data.channels) == ("digits_cnn", (28, 28), "gray")
    assert "as configured; the data suggests digits_cnn 64x64 rgb" in caplog.messages[-1]
    partly = fit_to_data(_cfg(data, flags={"data.image_size": [48, 48]}))
    assert (partly.model.arch, partly.data.image_size, partly.data.channels) == ("digits_cnn", (48, 48), "rgb")


def test_the_digits_source_and_unreadable_folders_are_left_alone(tmp_path: Path) -> None:
    digits = TrainConfig()
    assert fit_to_data(digits) == digits
    assert profile_folder(tmp_path / "missing") is None
    (tmp_path / "empty" / "a").mkdir(parents=True)
    empty = _cfg(tmp_path / "empty")
    assert fit_to_data(empty) == empty
