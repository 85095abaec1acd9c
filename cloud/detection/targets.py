"""CenterNet training targets from boxes: Gaussian class heatmaps, box sizes and centre offsets at each centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Targets:
    """Dense targets of one image at the output stride; size/offset/mask hold up to max_objects entries."""

    heatmap: np.ndarray  # float32 [C, h, w]
    size: np.ndarray  # float32 [M, 2] box (w, h) in output-grid cells
    offset: np.ndarray  # float32 [M, 2] sub-cell centre offset
    index: np.ndarray  # int64 [M] flat cell index y * w + x
    mask: np.ndarray  # float32 [M] 1 for real objects


def gaussian_radius(height: float, width: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius: the largest centre shift whose box still overlaps the true box by min_overlap."""
    a1, b1 = 1.0, height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + np.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


def _draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
    d = 2 * radius + 1
    sigma = d / 6
    ys, xs = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    g = np.exp(-(xs * xs + ys * ys) / (2 * sigma * sigma))
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    region = heatmap[cy - top : cy + bottom, cx - left : cx + right]
    patch = g[radius - top : radius + bottom, radius - left : radius + right]
    np.maximum(region, patch, out=region)


def encode(
    boxes: np.ndarray, classes: np.ndarray, num_classes: int, out_hw: tuple[int, int], stride: int,
    max_objects: int,
) -> Targets:
    """Targets for boxes (xyxy, input pixels); boxes beyond max_objects are dropped (largest kept first)."""
    h, w = out_hw
    heatmap = np.zeros((num_classes, h, w), dtype=np.float32)
    size = np.zeros((max_objects, 2), dtype=np.float32)
    offset = np.zeros((max_objects, 2), dtype=np.float32)
    index = np.zeros(max_objects, dtype=np.int64)
    mask = np.zeros(max_objects, dtype=np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
    for k, i in enumerate(np.argsort(-areas, kind="stable")[:max_objects]):
        x0, y0, x1, y1 = (float(v) / stride for v in boxes[i])
        bw, bh = x1 - x0, y1 - y0
        if bw <= 0 or bh <= 0:
            continue
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        radius = max(0, int(gaussian_radius(np.ceil(bh), np.ceil(bw))))
        _draw_gaussian(heatmap[int(classes[i])], ix, iy, radius)
        size[k] = (bw, bh)
        offset[k] = (cx - ix, cy - iy)
        index[k] = iy * w + ix
        mask[k] = 1.0
    return Targets(heatmap, size, offset, index, mask)
