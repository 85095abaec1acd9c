"""Box and polygon arithmetic in frame pixels: IoU, areas, the bottom-centre point and point-in-polygon."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.detection.objects import Box

Point = tuple[float, float]
# Points closer than this to an edge count as on it: float noise must not flip a point on a shared zone border.
EDGE_EPS = 1e-9


def area(box: Box) -> float:
    """Box area in square pixels (0 for a degenerate box)."""
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def bottom_centre(box: Box) -> Point:
    """Where an object stands: the middle of its box's bottom edge (what zones and masks test)."""
    return ((box[0] + box[2]) / 2.0, box[3])


def iou_matrix(a: Sequence[Box], b: Sequence[Box]) -> np.ndarray:
    """IoU of every box of `a` against every box of `b`, shape (len(a), len(b))."""
    if not a or not b:
        return np.zeros((len(a), len(b)), dtype=np.float64)
    aa = np.asarray(a, dtype=np.float64)[:, None, :]
    bb = np.asarray(b, dtype=np.float64)[None, :, :]
    w = np.clip(np.minimum(aa[..., 2], bb[..., 2]) - np.maximum(aa[..., 0], bb[..., 0]), 0.0, None)
    h = np.clip(np.minimum(aa[..., 3], bb[..., 3]) - np.maximum(aa[..., 1], bb[..., 1]), 0.0, None)
    inter = w * h
    area_a = np.clip(aa[..., 2] - aa[..., 0], 0, None) * np.clip(aa[..., 3] - aa[..., 1], 0, None)
    area_b = np.clip(bb[..., 2] - bb[..., 0], 0, None) * np.clip(bb[..., 3] - bb[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou(a: Box, b: Box) -> float:
    """IoU of two boxes (plain floats: called per object per frame, where numpy's overhead dominates)."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def _on_segment(p: Point, a: Point, b: Point) -> bool:
    cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    scale = max(1.0, abs(b[0] - a[0]) + abs(b[1] - a[1]))
    if abs(cross) > EDGE_EPS * scale:
        return False
    return (min(a[0], b[0]) - EDGE_EPS <= p[0] <= max(a[0], b[0]) + EDGE_EPS
            and min(a[1], b[1]) - EDGE_EPS <= p[1] <= max(a[1], b[1]) + EDGE_EPS)


def point_in_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """Whether p lies inside the polygon or on its boundary (edges and vertices count as inside)."""
    n = len(polygon)
    for i in range(n):
        if _on_segment(p, polygon[i], polygon[(i + 1) % n]):
            return True
    inside = False
    x, y = p
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < x_cross:
                inside = not inside
    return inside
