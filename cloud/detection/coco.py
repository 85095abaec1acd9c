"""A user's detection data in COCO JSON (DIR/annotations.json, images under DIR), checked before any training.

Every problem is refused with one line naming the file and what to fix; nothing is written while loading.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloud.errors import DataError

ANNOTATIONS_FILE = "annotations.json"
# Boxes may reach a pixel past the image edge from rounding in labelling tools; more than this is a wrong label.
_EDGE_TOLERANCE = 1.0


@dataclass(frozen=True)
class CocoImage:
    """One image of the set: its file and its boxes (xyxy, original pixels) with class indices into classes."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class CocoSet:
    """The parsed set: class names in category-id order and the images with their boxes."""

    annotations: Path
    classes: list[str]
    images: list[CocoImage]


def _fail(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}")


def _get(obj: Any, key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _fail(path, f"{where} has no '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _fail(path, f"{where} '{key}' is {type(value).__name__}, expected {getattr(kind, '__name__', kind)}")
    return value


def _categories(raw: Any, path: Path) -> tuple[dict[int, int], list[str]]:
    cats = _get(raw, "categories", list, path, "the file")
    if not cats:
        raise _fail(path, "'categories' is empty; a detector needs at least one class")
    ids: dict[int, int] = {}
    names: list[str] = []
    for n, cat in enumerate(sorted(cats, key=lambda c: c.get("id", 0) if isinstance(c, dict) else 0)):
        cid = _get(cat, "id", int, path, f"category #{n}")
        name = _get(cat, "name", str, path, f"category {cid}")
        if cid in ids:
            raise _fail(path, f"category id {cid} appears twice")
        if not name.strip() or name in names:
            raise _fail(path, f"category {cid} has an empty or repeated name {name!r}")
        ids[cid] = len(names)
        names.append(name)
    return ids, names


def load_coco(root: Path) -> CocoSet:
    """Parse and check DIR/annotations.json and that every image it names exists under DIR."""
    root = Path(root)
    path = root / ANNOTATIONS_FILE
    if not root.is_dir():
        raise DataError(f"data directory {root} does not exist or is not a directory")
    if not path.is_file():
        raise DataError(f"{path} not found: detection data needs COCO JSON at DIR/{ANNOTATIONS_FILE}")
    try:
        raw = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(path, f"not readable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise _fail(path, "top level is not a JSON object with images, annotations, categories")
    cat_index, classes = _categories(raw, path)
    images: dict[int, dict[str, Any]] = {}
    for n, img in enumerate(_get(raw, "images", list, path, "the file")):
        iid = _get(img, "id", int, path, f"image #{n}")
        fname = _get(img, "file_name", str, path, f"image {iid}")
        width = _get(img, "width", int, path, f"image {iid}")
        height = _get(img, "height", int, path, f"image {iid}")
        if iid in images:
            raise _fail(path, f"image id {iid} appears twice")
        if width <= 0 or height <= 0:
            raise _fail(path, f"image {iid} has size {width}x{height}")
        file = (root / fname).resolve()
        if not file.is_relative_to(root.resolve()):
            raise _fail(path, f"image {iid} file_name {fname!r} points outside {root}")
        if not file.is_file():
            raise _fail(path, f"image {iid} file {fname!r} not found under {root}")
        images[iid] = {"path": file, "width": width, "height": height, "boxes": [], "classes": []}
    if not images:
        raise _fail(path, "'images' is empty")
    for n, ann in enumerate(_get(raw, "annotations", list, path, "the file")):
        where = f"annotation #{n}"
        iid = _get(ann, "image_id", int, path, where)
        cid = _get(ann, "category_id", int, path, where)
        bbox = _get(ann, "bbox", list, path, where)
        if iid not in images:
            raise _fail(path, f"{where} names image_id {iid}, which is not in 'images'")
        if cid not in cat_index:
            raise _fail(path, f"{where} names category_id {cid}, which is not in 'categories'")
        if len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox
        ):
            raise _fail(path, f"{where} bbox {bbox!r} is not 4 finite numbers [x, y, width, height]")
        x, y, w, h = (float(v) for v in bbox)
        img = images[iid]
        if w <= 0 or h <= 0:
            raise _fail(path, f"{where} bbox {bbox!r} has a non-positive width or height")
        if x < -_EDGE_TOLERANCE or y < -_EDGE_TOLERANCE or x + w > img["width"] + _EDGE_TOLERANCE \
                or y + h > img["height"] + _EDGE_TOLERANCE:
            raise _fail(path, f"{where} bbox {bbox!r} lies outside image {iid} ({img['width']}x{img['height']})")
        img["boxes"].append([max(x, 0.0), max(y, 0.0), min(x + w, img["width"]), min(y + h, img["height"])])
        img["classes"].append(cat_index[cid])
    out = [
        CocoImage(
            path=v["path"], width=v["width"], height=v["height"],
            boxes=np.asarray(v["boxes"], dtype=np.float32).reshape(-1, 4),
            classes=np.asarray(v["classes"], dtype=np.int64),
        )
        for _, v in sorted(images.items())
    ]
    if not any(len(i.boxes) for i in out):
        raise _fail(path, "'annotations' is empty; nothing to learn from")
    return CocoSet(path, classes, out)
