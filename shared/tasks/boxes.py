"""Box arithmetic in numpy: format conversion, pairwise IoU and class-aware non-maximum suppression."""

from __future__ import annotations

import numpy as np

# Candidates NMS considers at most, best scores first (Ultralytics' max_nms): bounds the cost of a noisy frame.
MAX_NMS_CANDIDATES = 30_000


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[..., 4] centre x, centre y, width, height -> x1, y1, x2, y2."""
    b = np.asarray(boxes, dtype=np.float64)
    half = b[..., 2:4] / 2.0
    return np.concatenate([b[..., 0:2] - half, b[..., 0:2] + half], axis=-1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of xyxy boxes [..., 4]; inverted boxes count as empty."""
    b = np.asarray(boxes, dtype=np.float64)
    return np.clip(b[..., 2] - b[..., 0], 0.0, None) * np.clip(b[..., 3] - b[..., 1], 0.0, None)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] of xyxy boxes a [N, 4] and b [M, 4]; 0 where both boxes are empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_keep: int | None = None,
) -> np.ndarray:
    """Indices kept by greedy NMS, best score first; with class_ids, boxes only suppress boxes of their class.

    A box is dropped when its IoU with a kept, higher-scoring box is above iou_threshold (torchvision's rule).
    Equal scores keep the lower index first.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes for {scores.shape[0]} scores")
    order = np.argsort(-scores, kind="stable")[:MAX_NMS_CANDIDATES]
    if class_ids is not None and boxes.size:
        # Shift each class into its own region of the plane so boxes of different classes never overlap.
        span = float(np.abs(boxes).max()) * 2.0 + 1.0
        boxes = boxes + (np.asarray(class_ids, dtype=np.float64).reshape(-1, 1) * span)
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
    areas = box_area(boxes)
    keep: list[int] = []
    limit = order.size if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        best, rest = int(order[0]), order[1:]
        keep.append(best)
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.clip(w, 0.0, None) * np.clip(h, 0.0, None)
        # Two empty boxes have no union: IoU 0, so neither suppresses the other.
        union = np.maximum(areas[best] + areas[rest] - inter, np.finfo(np.float64).tiny)
        order = rest[inter <= iou_threshold * union]
    return np.asarray(keep, dtype=np.int64)
