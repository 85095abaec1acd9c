"""The task metric of a packaged model file: on the user's --eval-data, or against the FP32 model's own results.

Eval data is read as the trainer reads it: COCO JSON (DIR/annotations.json) for detection, one folder of images per
class for classification; class names must be among the labels. Detections are decoded by the manifest's own head
(shared.tasks) at Ultralytics' validation settings (score 0.001, NMS IoU 0.7, 300 boxes) and scored by pycocotools.
Without eval data the FP32 model's results at the manifest's thresholds stand in as labels, so the figures say how
far a variant agrees with FP32 (FP32 scores 1.0 against itself) and train.dataset says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud.byo.inputs import decode_rgb, preprocess_frames
from cloud.datasets import image_files
from cloud.detection.coco import load_coco
from cloud.detection.coco_eval import coco_map
from cloud.errors import CloudError, ModelRefused
from cloud.ort_session import ORT_ERRORS, open_session
from shared.manifest import Preprocess
from shared.preprocessing import boxes_to_input
from shared.task_contract import DetectionThresholds
from shared.tasks import HeadContext, TaskHead, make_head
from shared.tasks.detection import Detections

# Ultralytics' `yolo val` settings: mAP counts low-scoring boxes too.
EVAL_THRESHOLDS = DetectionThresholds(score=0.001, iou=0.7, max_detections=300)
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class EvalSet:
    """Preprocessed inputs with labels: boxes (model-input pixels) and class ids per image, or one class each."""

    name: str
    inputs: np.ndarray
    sha256: str
    boxes: list[np.ndarray] | None = None
    classes: list[np.ndarray] | None = None
    labels: np.ndarray | None = None

    @property
    def objectless(self) -> bool:
        """A detection set without a single box (FP32 found nothing to stand in as labels): mAP is undefined."""
        return self.boxes is not None and not any(len(b) for b in self.boxes)


@dataclass(frozen=True)
class Quality:
    """A variant's task figures: accuracy (classification) or mAP@.5 and mAP@.5:.95 (detection)."""

    accuracy: float | None = None
    map50: float | None = None
    map50_95: float | None = None

    @property
    def value(self) -> float:
        """The gate figure: accuracy or mAP@.5:.95."""
        figure = self.accuracy if self.accuracy is not None else self.map50_95
        assert figure is not None
        return figure


def run_model(path: Path, inputs: np.ndarray, threads: int = 0) -> Outputs:
    """Every output by name for all inputs, in chunks of the model's batch when it is fixed."""
    session = open_session(path, threads, spin=False)
    meta = session.get_inputs()[0]
    first = meta.shape[0] if meta.shape else None
    batch = first if isinstance(first, int) and first > 0 else 16
    names = [o.name for o in session.get_outputs()]
    chunks: list[list[np.ndarray]] = [[] for _ in names]
    try:
        for start in range(0, len(inputs), batch):
            chunk = inputs[start : start + batch]
            keep = len(chunk)
            if isinstance(first, int) and first > 0 and keep < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - keep, *chunk.shape[1:]), dtype=chunk.dtype)])
            for acc, out in zip(chunks, session.run(None, {meta.name: np.ascontiguousarray(chunk)}), strict=True):
                acc.append(np.asarray(out)[:keep])
    except ORT_ERRORS as exc:
        raise ModelRefused(f"{path.name}: ONNX Runtime failed on the package's inputs: {exc}") from exc
    return {n: np.concatenate(c) for n, c in zip(names, chunks, strict=True)}


def _label_index(names: list[str], labels: list[str], where: Path) -> list[int]:
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ModelRefused(f"{where}: classes {unknown[:5]} are not among the package's labels")
    return [labels.index(n) for n in names]


def load_detection_eval(root: Path, recipe: Preprocess, labels: list[str]) -> EvalSet:
    """COCO JSON eval data, each image preprocessed and its boxes moved into model-input pixels."""
    try:
        coco = load_coco(root)
    except CloudError as exc:
        raise ModelRefused(f"--eval-data: {exc}") from exc
    index = np.asarray(_label_index(coco.classes, labels, coco.annotations), dtype=np.int64)
    decoded = [decode_rgb(img.path) for img in coco.images]
    inputs, geometries = preprocess_frames([rgb for rgb, _ in decoded], recipe)
    boxes = [boxes_to_input(img.boxes, g).astype(np.float32) for img, g in zip(coco.images, geometries, strict=True)]
    classes = [index[img.classes] for img in coco.images]
    digest = _digest([coco.annotations.read_bytes(), *(data for _, data in decoded)])
    return EvalSet(f"{root} (COCO JSON, {len(coco.images)} images)", inputs, digest, boxes=boxes, classes=classes)


def load_classification_eval(root: Path, recipe: Preprocess, labels: list[str]) -> EvalSet:
    """One sub-folder of images per class (folder name = label)."""
    if not root.is_dir():
        raise ModelRefused(f"--eval-data {root} is not a directory of class folders")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ModelRefused(f"--eval-data {root} has no class folders (one sub-folder of images per label)")
    index = _label_index([f.name for f in folders], labels, root)
    frames: list[np.ndarray] = []
    truth: list[int] = []
    blobs: list[bytes] = []
    for folder, cls in zip(folders, index, strict=True):
        for path in image_files(folder, follow_links=False):
            rgb, data = decode_rgb(path)
            frames.append(rgb)
            truth.append(cls)
            blobs.append(folder.name.encode() + b"\0" + data)
    if not frames:
        raise ModelRefused(f"--eval-data {root}: its class folders hold no images")
    inputs, _ = preprocess_frames(frames, recipe)
    return EvalSet(f"{root} (class folders, {len(frames)} images)", inputs, _digest(blobs),
                   labels=np.asarray(truth, dtype=np.int64))


def _digest(blobs: list[bytes]) -> str:
    h = hashlib.sha256()
    for blob in blobs:
        h.update(hashlib.sha256(blob).digest())
    return h.hexdigest()


def eval_head(head: TaskHead[object], context: HeadContext) -> TaskHead[object]:
    """The manifest's head at validation thresholds (detection), or the head itself."""
    if head.task != "detection":
        return head
    return make_head(head.spec, context, EVAL_THRESHOLDS)  # type: ignore[attr-defined]


def pseudo_eval(name: str, sha256: str, inputs: np.ndarray, head: TaskHead[object], fp32: Outputs) -> EvalSet:
    """The FP32 model's own results on the inputs as labels (boxes at the manifest's thresholds, or top-1)."""
    results = head.decode(fp32)
    source = f"FP32 model's own results on {name}"
    if head.task == "detection":
        dets: list[Detections] = results  # type: ignore[assignment]
        boxes = [np.asarray([d.box for d in r], dtype=np.float32).reshape(-1, 4) for r in dets]
        classes = [np.asarray([d.class_id for d in r], dtype=np.int64) for r in dets]
        return EvalSet(source, inputs, sha256, boxes=boxes, classes=classes)
    return EvalSet(source, inputs, sha256, labels=np.asarray([p.index for p in results], dtype=np.int64))  # type: ignore[attr-defined]


def quality(head: TaskHead[object], context: HeadContext, outputs: Outputs, data: EvalSet) -> Quality:
    """The task figures of one variant's outputs on the eval set."""
    if data.labels is not None:
        predicted = np.asarray([p.index for p in head.decode(outputs)])  # type: ignore[attr-defined]
        return Quality(accuracy=float((predicted == data.labels).mean()))
    assert data.boxes is not None and data.classes is not None
    dets: list[Detections] = eval_head(head, context).decode(outputs)  # type: ignore[assignment]
    k = max([len(d) for d in dets] + [1])
    boxes = np.zeros((len(dets), k, 4), dtype=np.float32)
    scores = np.zeros((len(dets), k), dtype=np.float32)
    ids = np.zeros((len(dets), k), dtype=np.int64)
    for i, frame in enumerate(dets):
        for j, d in enumerate(frame):
            boxes[i, j], scores[i, j], ids[i, j] = d.box, d.score, d.class_id
    try:
        scored = coco_map(data.boxes, data.classes, boxes, scores, ids, len(context.labels))
    except CloudError as exc:
        raise ModelRefused(f"mAP on {data.name}: {exc}") from exc
    return Quality(map50=scored.map50, map50_95=scored.map50_95)
