"""The preprocessing recipe of an external model: its input shape, its own metadata, then the user's overrides.

Defaults: a detector (and any Ultralytics export) gets Ultralytics' recipe: letterbox, RGB, x / 255, pad 114, no
mean/std; any other classifier gets the torchvision/timm recipe: stretch, RGB, x / 255, ImageNet mean and std.
A 1-channel input is gray. `--preprocess key=value` overrides any field of the manifest's Preprocess.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import yaml
from pydantic import ValidationError

from cloud.byo.model_io import ModelIO
from cloud.byo.model_metadata import ModelMetadata
from cloud.errors import ModelRefused
from shared.manifest import Preprocess

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
ULTRALYTICS_PAD = 114


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """key=value pairs (values as YAML; resize as HxW, scale as a fraction like 1/255) into Preprocess fields."""
    out: dict[str, Any] = {}
    known = set(Preprocess.model_fields)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise ModelRefused(f"--preprocess takes key=value with a key among {sorted(known)}, got {pair!r}")
        out[key] = _value(key, raw.strip())
    return out


def _value(key: str, raw: str) -> Any:
    if key == "resize" and "x" in raw.lower():
        h, _, w = raw.lower().partition("x")
        return [_int(h, raw), _int(w, raw)]
    if key == "scale" and "/" in raw:
        try:
            return float(Fraction(raw))
        except (ValueError, ZeroDivisionError) as exc:
            raise ModelRefused(f"--preprocess scale={raw} is not a number or fraction") from exc
    if key in ("mean", "std") and "," in raw and not raw.startswith("["):
        raw = f"[{raw}]"
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ModelRefused(f"--preprocess {key}={raw} is not a value: {exc}") from exc


def _int(text: str, raw: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ModelRefused(f"--preprocess resize={raw} is not HEIGHTxWIDTH") from exc


def build_recipe(io: ModelIO, meta: ModelMetadata, task: str, overrides: dict[str, Any], where: str) -> Preprocess:
    """The Preprocess a device applies to frames for this model; refused where the metadata and graph disagree."""
    hw = io.hw
    if meta.imgsz is not None and hw is not None and meta.imgsz != hw:
        raise ModelRefused(f"{where}: metadata imgsz {list(meta.imgsz)} disagrees with the input {io.input_dims}")
    size = hw or meta.imgsz
    if size is None and "resize" not in overrides:
        raise ModelRefused(f"{where}: the input size is dynamic ({io.input_dims}) and the model has no imgsz "
                           "metadata; give --preprocess resize=HEIGHTxWIDTH")
    gray = io.channels == 1
    n = 1 if gray else 3
    yolo_recipe = task == "detection" or meta.ultralytics
    fields: dict[str, Any] = {
        "resize": list(size) if size is not None else None,
        "channel_order": "gray" if gray else "rgb",
        "scale": 1.0 / 255.0,
        "mean": [0.0] * n if yolo_recipe or gray else IMAGENET_MEAN,
        "std": [1.0] * n if yolo_recipe or gray else IMAGENET_STD,
        "layout": io.layout,
        "resize_mode": "letterbox" if task == "detection" else "stretch",
        "pad_value": ULTRALYTICS_PAD,
    }
    fields.update(overrides)
    try:
        recipe = Preprocess.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ModelRefused(f"--preprocess: {'.'.join(map(str, first['loc'])) or 'recipe'}: {first['msg']}") from exc
    if recipe.layout != io.layout or recipe.channels != io.channels:
        raise ModelRefused(f"{where}: the recipe makes {recipe.layout} with {recipe.channels} channel(s) but the input "
                           f"is {io.input_dims} ({io.layout})")
    if hw is not None and tuple(recipe.resize) != hw:
        raise ModelRefused(f"{where}: --preprocess resize {list(recipe.resize)} differs from the fixed input "
                           f"{io.input_dims}")
    return recipe
