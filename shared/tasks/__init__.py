"""Task heads: the one place that turns a model's output tensors into results, for the cloud's gates and devices.

The contract (manifest schema 2, shared.task_contract):

- ``manifest.task`` is ``classification`` or ``detection`` (the sensor issue adds ``anomaly``); ``manifest.head``
  says what the outputs mean, told apart by ``format``:

  * ``logits`` / ``probabilities`` (classification): one output [B, classes]; softmax is applied to logits.
  * ``decoded`` (detection): ``boxes`` [B, K, 4], ``scores`` [B, K], ``class_ids`` [B, K] (int or float ids,
    negative ids are padding), optional ``num_detections`` [B]; ``box_format`` xyxy or cxcywh.
  * ``packed`` (detection): one [B, K, 6] output of x1, y1, x2, y2, score, class id (Ultralytics end2end).
  * ``yolo`` (detection): one raw [B, 4 + classes, N] output: cx, cy, w, h, then per-class scores already
    sigmoid (Ultralytics' export); NMS is never in the graph.

  Detection boxes are in ``box_space`` ``input_pixels`` (pixels of the letterboxed model input) or
  ``normalized`` (0-1 of the model input). ``nms_in_graph`` False makes the head run class-aware NMS.
  ``thresholds`` (score, iou, max_detections) are defaults a device may override from its config.
- Manifests of schema 1 load as classification with a ``logits`` head (shared.manifest.upgrade_manifest).

Using a head::

    head = head_for(manifest, thresholds=None)     # registry keyed by (task, format); TaskContractError if none
    geometry = frame_geometry(manifest.preprocess, frame.shape[:2])   # shared.preprocessing
    results = head.decode(outputs, geometry)       # outputs: {name: array} or a list in manifest output order
    figures = head.quality(results_over_a_window)  # QualityFigures for rollout gates

``decode`` returns one result per image of the batch: a ``Prediction`` for classification, a tuple of
``Detection`` (label, class_id, score, box xyxy in frame pixels) for detection; without a geometry, boxes stay in
model-input pixels (as golden samples store them). ``detection_agreement`` matches two detectors' boxes
(IoU >= 0.5, same class, greedy by score) into precision/recall/F1 for golden gates and shadow checks.
"""

from __future__ import annotations

from shared.tasks.agreement import MATCH_IOU, Agreement, detection_agreement, match_detections
from shared.tasks.anomaly import AnomalyHead, AnomalyScore, score_window
from shared.tasks.base import (
    Geometry,
    HeadContext,
    Outputs,
    QualityFigures,
    TaskHead,
    head_factory,
    head_for,
    make_head,
    register_head,
    registered_heads,
)
from shared.tasks.boxes import box_iou, cxcywh_to_xyxy, nms
from shared.tasks.classification import ClassificationHead, Prediction, classify, softmax
from shared.tasks.detection import Detection, DetectionHead, Detections, detection_quality, to_detections

__all__ = [
    "MATCH_IOU",
    "Agreement",
    "AnomalyHead",
    "AnomalyScore",
    "ClassificationHead",
    "Detection",
    "DetectionHead",
    "Detections",
    "Geometry",
    "HeadContext",
    "Outputs",
    "Prediction",
    "QualityFigures",
    "TaskHead",
    "box_iou",
    "classify",
    "cxcywh_to_xyxy",
    "detection_agreement",
    "detection_quality",
    "head_factory",
    "head_for",
    "make_head",
    "match_detections",
    "nms",
    "register_head",
    "registered_heads",
    "score_window",
    "softmax",
    "to_detections",
]
