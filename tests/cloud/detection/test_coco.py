"""A user's COCO set: a valid one loads with its boxes; each malformed one is refused in one line naming the file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cloud.config import DataConfig
from cloud.detection.coco import ANNOTATIONS_FILE, load_coco
from cloud.detection.config import DetectionConfig
from cloud.detection.data import coco_data
from cloud.errors import DataError


def write_set(root: Path, images: int = 6, size: tuple[int, int] = (96, 64)) -> dict[str, Any]:
    """A small valid COCO set: one square per image on gray, category ids 3 and 7 (not 0-based on purpose)."""
    w, h = size
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "cat"},
                                                                            {"id": 3, "name": "dog"}]}
    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        pixels = np.full((h, w, 3), 90, np.uint8)
        x, y = 10 + 5 * i, 8 + 3 * i
        pixels[y : y + 20, x : x + 24] = 240
        Image.fromarray(pixels).save(root / "img" / f"{i}.png")
        doc["images"].append({"id": i + 1, "file_name": f"img/{i}.png", "width": w, "height": h})
        doc["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": 3 if i % 2 else 7,
                                   "bbox": [x, y, 24, 20]})
    (root / ANNOTATIONS_FILE).write_text(json.dumps(doc))
    return doc


def test_a_valid_set_loads_with_boxes_in_xyxy_and_classes_by_category_id(tmp_path: Path) -> None:
    write_set(tmp_path)
    coco = load_coco(tmp_path)
    assert coco.classes == ["dog", "cat"]  # sorted by category id: 3 then 7
    first = coco.images[0]
    assert first.path == (tmp_path / "img" / "0.png").resolve()
    assert first.boxes.tolist() == [[10.0, 8.0, 34.0, 28.0]]
    assert first.classes.tolist() == [1]


def test_a_valid_set_is_letterboxed_to_the_model_input_with_its_boxes(tmp_path: Path) -> None:
    write_set(tmp_path, images=8)
    data = coco_data(tmp_path, DataConfig(val_fraction=0.2, test_fraction=0.2), DetectionConfig(image_size=(64, 64)),
                     seed=0)
    assert len(data.train) + len(data.val) + len(data.test) == 8
    assert data.preprocess.resize_mode == "letterbox" and data.classes == ["dog", "cat"]
    # 96x64 -> 64x43 centred (scale 2/3 across, 43/64 down), 10 px of padding on top.
    images = np.concatenate([data.train.images, data.val.images, data.test.images])
    boxes = data.train.boxes + data.val.boxes + data.test.boxes
    for image, box in zip(images, boxes, strict=True):
        x0, y0, x1, y1 = box[0]
        assert x1 - x0 == pytest.approx(16.0, abs=0.01) and y1 - y0 == pytest.approx(20 * 43 / 64, abs=0.01)
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        assert image[cy, cx].min() > 200  # the square is where the box says
    assert (images[:, 0] == 114).all()  # letterbox padding rows


def _mutate(doc: dict[str, Any], fn: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    fn(doc)
    return doc


BAD: dict[str, Callable[[dict[str, Any]], None]] = {
    "bbox with 3 numbers": lambda d: d["annotations"][0].update(bbox=[1, 2, 3]),
    "bbox not numbers": lambda d: d["annotations"][0].update(bbox=[1, "2", 3, 4]),
    "negative width": lambda d: d["annotations"][0].update(bbox=[5, 5, -3, 4]),
    "outside the image": lambda d: d["annotations"][0].update(bbox=[90, 5, 30, 4]),
    "unknown category": lambda d: d["annotations"][0].update(category_id=99),
    "unknown image": lambda d: d["annotations"][0].update(image_id=99),
    "missing image file": lambda d: d["images"][0].update(file_name="img/nope.png"),
    "image outside the set": lambda d: d["images"][0].update(file_name="../escape.png"),
    "duplicate image id": lambda d: d["images"][1].update(id=1),
    "no categories": lambda d: d.update(categories=[]),
    "annotations not a list": lambda d: d.update(annotations={"a": 1}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_labels_are_refused_in_one_line_naming_the_file(tmp_path: Path, case: str) -> None:
    doc = write_set(tmp_path)
    (tmp_path / ANNOTATIONS_FILE).write_text(json.dumps(_mutate(doc, BAD[case])))
    with pytest.raises(DataError) as err:
        load_coco(tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / ANNOTATIONS_FILE))


def test_unreadable_json_and_a_missing_file_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=ANNOTATIONS_FILE):
        load_coco(tmp_path)
    (tmp_path / ANNOTATIONS_FILE).write_text("{not json")
    with pytest.raises(DataError, match="not readable JSON") as err:
        load_coco(tmp_path)
    assert str(err.value).startswith(str(tmp_path / ANNOTATIONS_FILE)) and "\n" not in str(err.value)
