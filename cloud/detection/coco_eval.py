"""mAP@.5 and mAP@.5:.95 with pycocotools' COCOeval (the standard implementation, not a hand-written one)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloud.errors import CloudError


@dataclass(frozen=True)
class MapScores:
    """COCO box AP over all areas at IoU .5 and averaged over .5:.95, on a 0-1 scale."""

    map50: float
    map50_95: float


def coco_map(
    gt_boxes: Sequence[np.ndarray],
    gt_classes: Sequence[np.ndarray],
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    num_classes: int,
    min_score: float = 0.001,
) -> MapScores:
    """Ground truth per image (xyxy, ids) against decoded detections [N,K,4], [N,K], [N,K] of the same images."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    n = len(gt_boxes)
    if boxes.shape[0] != n or scores.shape[0] != n or classes.shape[0] != n:
        raise CloudError(f"mAP needs detections for each of the {n} images, got {boxes.shape[0]}")
    images = [{"id": i + 1} for i in range(n)]
    annotations: list[dict[str, object]] = []
    for i, (gb, gc) in enumerate(zip(gt_boxes, gt_classes, strict=True)):
        for box, cls in zip(gb, gc, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h, "iscrowd": 0,
            })
    if not annotations:
        raise CloudError("mAP needs at least one ground-truth box in the evaluation split")
    gt = COCO()
    gt.dataset = {
        "images": images, "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    detections = []
    for i in range(n):
        keep = scores[i] >= min_score
        for box, score, cls in zip(boxes[i][keep], scores[i][keep], classes[i][keep], strict=True):
            detections.append({
                "image_id": i + 1, "category_id": int(cls) + 1, "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            })
    if not detections:
        return MapScores(0.0, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and its table
        gt.createIndex()
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return MapScores(map50=max(float(ev.stats[1]), 0.0), map50_95=max(float(ev.stats[0]), 0.0))
