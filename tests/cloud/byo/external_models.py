"""External ONNX models built offline, as users bring them: a YOLO-family detector in Ultralytics' output format and
metadata (a tiny torch net exported by torch.onnx, not the ultralytics package) and a plain classifier.

The detector finds SIZE x SIZE white squares: a 1x1 conv (identity, so INT8 has a layer to quantize) and ReLU, an
averaging SIZE x SIZE conv, and a steep sigmoid that fires only on a window lying exactly on a square. Its output
is Ultralytics' raw [1, 4 + classes, anchors] (cx, cy, w, h, per-class scores), one anchor per window position;
class 0 ("person") is the square, class 1 ("car") never fires. The classifier tells red, green and blue images
apart: global average pool of the channels, then a linear layer with identity weights (logits, dynamic batch).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from torch import nn

LABELS = ("person", "car")
IMGSZ = 64
SIZE = 8
COLOURS = ("red", "green", "blue")
_RGB = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}


class SquareYolo(nn.Module):
    """[1, 3, IMGSZ, IMGSZ] 0..1 RGB -> [1, 4 + classes, anchors]."""

    def __init__(self, classes: int = len(LABELS)) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1, bias=False)
        self.window = nn.Conv2d(3, 1, SIZE, bias=True)
        with torch.no_grad():
            self.stem.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
            self.window.weight.fill_(1.0 / (3 * SIZE * SIZE))
            assert self.window.bias is not None
            self.window.bias.fill_(-0.95)  # a window wholly on a square averages 1.0
        n = IMGSZ - SIZE + 1
        ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32),
                                indexing="ij")
        cx, cy = xs.reshape(-1) + SIZE / 2, ys.reshape(-1) + SIZE / 2
        wh = torch.full_like(cx, float(SIZE))
        self.register_buffer("anchors", torch.stack([cx, cy, wh, wh])[None])
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = torch.sigmoid(60.0 * self.window(torch.relu(self.stem(x)))).flatten(2)  # [1, 1, anchors]
        others = score * 0.0
        anchors: torch.Tensor = self.anchors  # type: ignore[assignment]
        return torch.cat([anchors.expand(x.shape[0], -1, -1), score,
                          *([others] * (self.classes - 1))], dim=1)


class ColourNet(nn.Module):
    """[N, 3, 32, 32] normalized RGB -> logits [N, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3) * 4.0)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class FragileColourNet(ColourNet):
    """ColourNet whose blue bias leads by 1.01 near 2048, where FP16's spacing is 2: rounded to FP16 it leads by 2,
    more than a red or green image's own channel makes up (0.4 x about 4), so FP16 answers blue for every colour."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3) * 0.4)
            self.fc.bias.copy_(torch.tensor([2048.0, 2048.0, 2049.01]))


def _export(model: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
            dynamic: bool) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (example,), str(path), input_names=[input_name], output_names=[output_name],
                          opset_version=17, dynamo=False,
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic else None)
    return onnx.load(str(path))


def ultralytics_metadata(names: Sequence[str], imgsz: int = IMGSZ, task: str = "detect") -> dict[str, str]:
    """metadata_props as Ultralytics' exporter writes them (str() of each value)."""
    return {"description": "Ultralytics YOLO11n model trained on squares.yaml", "author": "Ultralytics",
            "version": "8.3.0", "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "docs": "https://docs.ultralytics.com", "stride": "32", "task": task, "batch": "1",
            "imgsz": str([imgsz, imgsz]), "names": str(dict(enumerate(names)))}


def save_with_metadata(model: onnx.ModelProto, path: Path, metadata: dict[str, str]) -> Path:
    """The model with these metadata_props, saved self-contained."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def yolo_onnx(path: Path, names: Sequence[str] = LABELS, metadata: dict[str, str] | None = None) -> Path:
    """The square detector exported like `yolo export format=onnx` (fixed batch 1, input 'images', 'output0')."""
    model = _export(SquareYolo(len(names)), torch.zeros(1, 3, IMGSZ, IMGSZ), path, "images", "output0", dynamic=False)
    return save_with_metadata(model, path, ultralytics_metadata(names) if metadata is None else metadata)


def classifier_onnx(path: Path) -> Path:
    """The colour classifier as a torchvision-style export: input 'input' [batch, 3, 32, 32], 'logits'."""
    _export(ColourNet(), torch.zeros(2, 3, 32, 32), path, "input", "logits", dynamic=True)
    return path


def fp16_fragile_classifier_onnx(path: Path) -> Path:
    """A classifier FP32 gets right and FP16 does not (FragileColourNet), exported like classifier_onnx."""
    _export(FragileColourNet(), torch.zeros(2, 3, 32, 32), path, "input", "logits", dynamic=True)
    return path


def square_frame(corners: Sequence[tuple[int, int]], hw: tuple[int, int] = (IMGSZ, IMGSZ)) -> np.ndarray:
    """A BGR frame: dark background, a white SIZE x SIZE square at each top-left corner."""
    frame = np.full((*hw, 3), 20, dtype=np.uint8)
    for x, y in corners:
        frame[y : y + SIZE, x : x + SIZE] = 255
    return frame


def write_square_images(directory: Path, count: int, seed: int = 0) -> list[list[tuple[int, int]]]:
    """PNG scenes of 1 to 3 squares at seeded places that never touch; returns each image's corners."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    scenes = []
    for i in range(count):
        corners: list[tuple[int, int]] = []
        while len(corners) < 1 + i % 3:
            x, y = (int(v) for v in rng.integers(0, IMGSZ - SIZE, 2))
            if all(abs(x - a) > SIZE + 1 or abs(y - b) > SIZE + 1 for a, b in corners):
                corners.append((x, y))
        cv2.imwrite(str(directory / f"scene-{i:03d}.png"), square_frame(corners))
        scenes.append(corners)
    return scenes


def colour_image(colour: str, hw: tuple[int, int] = (40, 40), seed: int = 0) -> np.ndarray:
    """A BGR frame of one colour with a little noise."""
    rng = np.random.default_rng(seed)
    r, g, b = _RGB[colour]
    frame = np.empty((*hw, 3), dtype=np.int16)
    frame[:] = (b, g, r)
    frame += rng.integers(-20, 20, size=frame.shape).astype(np.int16)
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_colour_folders(root: Path, per_class: int) -> Path:
    """One folder of images per colour (the classification eval-data layout)."""
    for colour in COLOURS:
        (root / colour).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            cv2.imwrite(str(root / colour / f"{i:03d}.png"), colour_image(colour, seed=i))
    return root
