"""Image folders are listed and decoded by one piece of code for the trainer, detection's COCO reader and
`edgeferry package`; each refuses an undecodable file naming it, in its own error family."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cloud.byo.inputs import calibration_inputs
from cloud.byo.recipe import IMAGENET_MEAN, IMAGENET_STD
from cloud.config import DataConfig
from cloud.datasets import decode_rgb, image_files
from cloud.detection.config import DetectionConfig
from cloud.detection.data import coco_data
from cloud.errors import DataError, ModelRefused
from shared.manifest import Preprocess

BROKEN = b"\x89PNG\r\n\x1a\nthis is not a png"


def _folder(root: Path) -> Path:
    (root / "a" / ".hidden").mkdir(parents=True)
    (root / "b").mkdir()
    Image.new("L", (6, 4), 200).save(root / "b" / "gray.png")
    Image.new("RGB", (6, 4), (250, 10, 10)).save(root / "a" / "Red.JPG")
    Image.new("RGB", (6, 4)).save(root / "a" / ".hidden" / "skip.png")
    (root / "a" / "notes.txt").write_text("not an image")
    return root


def test_a_folder_lists_its_images_sorted_and_decodes_gray_as_rgb_with_the_file_bytes(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    files = image_files(root)
    assert [p.relative_to(root).as_posix() for p in files] == ["a/Red.JPG", "b/gray.png"]
    rgb, data = decode_rgb(root / "b" / "gray.png")
    assert rgb.shape == (4, 6, 3) and rgb.dtype == np.uint8 and (rgb == 200).all()
    assert data == (root / "b" / "gray.png").read_bytes()


def test_an_undecodable_file_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(BROKEN)
    with pytest.raises(DataError, match=r"cannot decode image .*broken\.png"):
        decode_rgb(tmp_path / "broken.png")


def test_package_calibration_images_are_the_trainers_listing_and_a_broken_one_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    root = _folder(tmp_path / "calib")
    recipe = Preprocess(resize=(8, 8), channel_order="rgb", scale=1 / 255, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    got = calibration_inputs(root, recipe, limit=10)
    assert got.arrays.shape == (2, 3, 8, 8) and got.source == f"{root} (2 images)"
    (root / "b" / "broken.png").write_bytes(BROKEN)
    with pytest.raises(ModelRefused, match=r"cannot decode image .*broken\.png.*; fix or remove it"):
        calibration_inputs(root, recipe, limit=10)


def test_a_coco_image_that_does_not_decode_is_refused_naming_it_and_its_annotations(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    root.mkdir()
    images = []
    for i in range(3):
        Image.new("RGB", (16, 16)).save(root / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 16, "height": 16})
    (root / "1.png").write_bytes(BROKEN)
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 2, 6, 6], "area": 36,
                    "iscrowd": 0} for i in range(3)]
    (root / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    with pytest.raises(DataError, match=r"1\.png: cannot decode image named in annotations\.json"):
        coco_data(root, DataConfig(), DetectionConfig(image_size=(32, 32)), seed=0)
