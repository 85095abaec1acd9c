"""Detection heads: decoded, packed or raw YOLO outputs to boxes in frame pixels, thresholded and NMS'd once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shared.errors import TaskContractError
from shared.preprocessing import FrameGeometry, boxes_to_frame, stretch_geometry
from shared.task_contract import (
    DecodedDetectionHeadSpec,
    DetectionHeadSpec,
    DetectionThresholds,
    PackedDetectionHeadSpec,
    YoloHeadSpec,
)
from shared.tasks.base import Geometry, HeadContext, Outputs, QualityFigures, geometries, pick_output, register_head
from shared.tasks.boxes import cxcywh_to_xyxy, nms


@dataclass(frozen=True, slots=True)
class Detection:
    """One object: its class, score and xyxy box in frame pixels (model-input pixels when no geometry was given)."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def bottom_centre(self) -> tuple[float, float]:
        """Where the object stands (zones test this point, as Frigate does)."""
        return ((self.box[0] + self.box[2]) / 2.0, self.box[3])


Detections = tuple[Detection, ...]
# Per image before thresholds: xyxy boxes [n, 4] in model-input pixels, scores [n], class ids [n].
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]


def to_detections(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, labels: Sequence[str]
) -> Detections:
    """Detection objects from parallel arrays (xyxy boxes [n, 4], scores [n], class ids [n])."""
    return tuple(
        Detection(
            label=labels[int(c)],
            class_id=int(c),
            score=float(s),
            box=(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
        )
        for b, s, c in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1),
                           np.asarray(class_ids).reshape(-1), strict=True)
    )


def detection_quality(results: Sequence[Detections]) -> QualityFigures:
    """Mean detection score, objects per frame and the class mix over a window of frames."""
    scores = [d.score for frame in results for d in frame]
    counts = Counter(d.label for frame in results for d in frame)
    return QualityFigures(
        frames=len(results),
        mean_score=float(np.mean(scores)) if scores else None,
        objects_per_frame=len(scores) / len(results) if results else None,
        class_counts=dict(sorted(counts.items())),
    )


class DetectionHead:
    """Shared tail of every detection format: score threshold, NMS unless in the graph, max detections, mapping."""

    task = "detection"

    def __init__(
        self, spec: DetectionHeadSpec, context: HeadContext, thresholds: DetectionThresholds | None = None
    ) -> None:
        self.spec = spec
        self.format = spec.format
        self.context = context
        self.thresholds = thresholds or spec.thresholds
        self.nms_in_graph = spec.nms_in_graph
        self._input_geometry = stretch_geometry(context.input_hw, context.input_hw)

    def decode(self, outputs: Outputs, geometry: Geometry = None) -> list[Detections]:
        """One tuple of detections per image, best score first, boxes in frame pixels (or input pixels)."""
        candidates = self.candidates(outputs)
        return [self._finish(c, g) for c, g in zip(candidates, geometries(geometry, len(candidates)), strict=True)]

    def quality(self, results: Sequence[Detections]) -> QualityFigures:
        """Mean detection score, objects per frame and class mix."""
        return detection_quality(results)

    def candidates(self, outputs: Outputs) -> list[Candidates]:
        """Per image: boxes, scores and class ids in model-input pixels, before thresholds (format-specific)."""
        raise NotImplementedError

    def _finish(self, candidates: Candidates, geometry: FrameGeometry | None) -> Detections:
        boxes, scores, class_ids = candidates
        t = self.thresholds
        keep = (scores >= t.score) & (class_ids >= 0)
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if class_ids.size and int(class_ids.max()) >= len(self.context.labels):
            raise TaskContractError(
                f"model output has class id {int(class_ids.max())} but the manifest lists "
                f"{len(self.context.labels)} labels"
            )
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
            raise TaskContractError("model output holds NaN or infinity")
        if self.nms_in_graph:
            order = np.argsort(-scores, kind="stable")[: t.max_detections]
        else:
            order = nms(boxes, scores, t.iou, class_ids=class_ids, max_keep=t.max_detections)
        mapped = boxes_to_frame(boxes[order], geometry or self._input_geometry)
        return to_detections(mapped, scores[order], class_ids[order], self.context.labels)

    def _to_pixels(self, xyxy: np.ndarray, space: str) -> np.ndarray:
        if space == "normalized":
            h, w = self.context.input_hw
            return xyxy * np.array([w, h, w, h], dtype=np.float64)
        return xyxy


class DecodedDetectionHead(DetectionHead):
    """boxes [B, K, 4], scores [B, K] and class ids [B, K] as separate outputs, optionally a valid count [B]."""

    spec: DecodedDetectionHeadSpec

    def candidates(self, outputs: Outputs) -> list[Candidates]:
        """Rows of each image up to its valid count, boxes converted to xyxy model-input pixels."""
        s = self.spec
        boxes = pick_output(outputs, s.boxes, self.context)
        if boxes.ndim == 2:
            boxes = boxes[np.newaxis]
        if boxes.ndim != 3 or boxes.shape[2] != 4:
            raise TaskContractError(f"decoded boxes are {boxes.shape}, expected [batch, detections, 4]")
        b, k = boxes.shape[:2]
        scores = _rows(pick_output(outputs, s.scores, self.context), b, k, s.scores)
        class_ids = _rows(pick_output(outputs, s.class_ids, self.context), b, k, s.class_ids)
        counts = np.full(b, k, dtype=np.int64)
        if s.num_detections is not None:
            counts = np.clip(_rows(pick_output(outputs, s.num_detections, self.context), b, 1, s.num_detections)
                             .reshape(b).astype(np.int64), 0, k)
        xyxy = boxes.astype(np.float64)
        if s.box_format == "cxcywh":
            xyxy = cxcywh_to_xyxy(xyxy)
        xyxy = self._to_pixels(xyxy, s.box_space)
        ids = np.rint(class_ids).astype(np.int64) if class_ids.dtype.kind == "f" else class_ids.astype(np.int64)
        return [(xyxy[i, : counts[i]], scores[i, : counts[i]].astype(np.float64), ids[i, : counts[i]])
                for i in range(b)]


class PackedDetectionHead(DetectionHead):
    """One [B, K, 6] output: x1, y1, x2, y2, score, class id per row."""

    spec: PackedDetectionHeadSpec

    def candidates(self, outputs: Outputs) -> list[Candidates]:
        """Each image's K rows split into boxes, scores and class ids."""
        out = pick_output(outputs, self.spec.output, self.context)
        if out.ndim == 2:
            out = out[np.newaxis]
        if out.ndim != 3 or out.shape[2] != 6:
            raise TaskContractError(f"packed detections are {out.shape}, expected [batch, detections, 6]")
        rows = out.astype(np.float64)
        xyxy = self._to_pixels(rows[..., :4], self.spec.box_space)
        ids = np.rint(rows[..., 5]).astype(np.int64)
        return [(xyxy[i], rows[i, :, 4], ids[i]) for i in range(rows.shape[0])]


class YoloDetectionHead(DetectionHead):
    """Raw Ultralytics output [B, 4 + classes, N]: cx, cy, w, h then one sigmoid score per class, per anchor."""

    spec: YoloHeadSpec

    def candidates(self, outputs: Outputs) -> list[Candidates]:
        """Best class per anchor with its score; anchors under the score threshold are dropped before any copy."""
        out = pick_output(outputs, self.spec.output, self.context)
        n = len(self.context.labels)
        if out.ndim == 2:
            out = out[np.newaxis]
        if out.ndim != 3 or out.shape[1] != 4 + n:
            raise TaskContractError(
                f"yolo output is {out.shape}, expected [batch, 4 + {n} labels = {4 + n}, anchors]"
            )
        result: list[Candidates] = []
        for image in out:
            class_scores = image[4:]
            best = class_scores.max(axis=0)
            keep = np.flatnonzero(best >= self.thresholds.score)
            ids = class_scores[:, keep].argmax(axis=0).astype(np.int64)  # argmax only where a box survives
            xyxy = self._to_pixels(cxcywh_to_xyxy(image[:4, keep].T), self.spec.box_space)
            result.append((xyxy, best[keep].astype(np.float64), ids))
        return result


def _rows(array: np.ndarray, b: int, k: int, name: str) -> np.ndarray:
    if array.size != b * k:
        raise TaskContractError(f"output {name!r} is {array.shape}, expected {b}x{k} values to match the boxes")
    return array.reshape(b, k)


def _decoded(spec: DecodedDetectionHeadSpec, ctx: HeadContext, t: DetectionThresholds | None) -> DetectionHead:
    return DecodedDetectionHead(spec, ctx, t)


def _packed(spec: PackedDetectionHeadSpec, ctx: HeadContext, t: DetectionThresholds | None) -> DetectionHead:
    return PackedDetectionHead(spec, ctx, t)


def _yolo(spec: YoloHeadSpec, ctx: HeadContext, t: DetectionThresholds | None) -> DetectionHead:
    return YoloDetectionHead(spec, ctx, t)


register_head("detection", "decoded")(_decoded)
register_head("detection", "packed")(_packed)
register_head("detection", "yolo")(_yolo)
