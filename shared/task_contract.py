"""The manifest's output contract: what each output tensor of a model means, per task and format.

A manifest names its ``task`` and a ``head``: one of the contracts below, told apart by ``format``. The task
heads in shared.tasks turn outputs into results from this contract alone, on the cloud and on every device.
Thresholds are defaults that a device's config may override.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A task needs a contract below and a head registered in shared.tasks.
TaskName = Literal["classification", "detection", "anomaly"]
TASKS: tuple[str, ...] = ("classification", "detection", "anomaly")
BoxSpace = Literal["input_pixels", "normalized"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectionThresholds(_Strict):
    """Detection defaults a device may override in its config: kept scores, NMS overlap and how many boxes."""

    score: float = Field(default=0.25, ge=0.0, le=1.0, description="Detections scoring below this are dropped.")
    iou: float = Field(
        default=0.45, gt=0.0, le=1.0,
        description="NMS drops a box overlapping a higher-scoring box of its class by more than this IoU.",
    )
    max_detections: int = Field(default=100, ge=1, le=10_000, description="At most this many boxes per frame.")


class ClassificationHeadSpec(_Strict):
    """One output [B, classes]: raw logits (the head applies softmax) or probabilities already summing to one."""

    format: Literal["logits", "probabilities"] = Field(default="logits", description="What the output holds.")
    output: str | None = Field(default=None, description="Output tensor name; None means the first output.")
    top_k: int = Field(default=3, ge=1, le=1000, description="How many best classes a result lists.")

    @property
    def task(self) -> str:
        """The task this contract serves."""
        return "classification"


class DecodedDetectionHeadSpec(_Strict):
    """Decoded in the graph: boxes [B, K, 4], scores [B, K], class ids [B, K], optionally a valid count [B]."""

    format: Literal["decoded"] = Field(description="Boxes, scores and class ids as separate outputs.")
    boxes: str = Field(default="boxes", description="Output tensor name of the boxes [B, K, 4].")
    scores: str = Field(default="scores", description="Output tensor name of the scores [B, K].")
    class_ids: str = Field(default="class_ids", description="Output tensor name of the class ids [B, K].")
    num_detections: str | None = Field(
        default=None, description="Output tensor name of the valid count per image [B] (padded outputs), if any."
    )
    box_format: Literal["xyxy", "cxcywh"] = Field(default="xyxy", description="Order of the 4 box numbers.")
    box_space: BoxSpace = Field(
        default="input_pixels",
        description="input_pixels: pixels of the (letterboxed) model input; normalized: 0-1 of the model input.",
    )
    nms_in_graph: bool = Field(default=True, description="False: the head runs class-aware NMS on the K boxes.")
    thresholds: DetectionThresholds = Field(default_factory=DetectionThresholds, description="Device defaults.")

    @property
    def task(self) -> str:
        """The task this contract serves."""
        return "detection"

    @model_validator(mode="after")
    def _distinct(self) -> DecodedDetectionHeadSpec:
        names = [self.boxes, self.scores, self.class_ids] + ([self.num_detections] if self.num_detections else [])
        if len(set(names)) != len(names):
            raise ValueError("boxes, scores, class_ids and num_detections must name different outputs")
        return self


class PackedDetectionHeadSpec(_Strict):
    """Decoded in one tensor [B, K, 6]: x1, y1, x2, y2, score, class id (Ultralytics end2end / nms=True export)."""

    format: Literal["packed"] = Field(description="One output of K rows of box, score and class id.")
    output: str | None = Field(default=None, description="Output tensor name; None means the first output.")
    box_space: BoxSpace = Field(default="input_pixels", description="Space of the xyxy box numbers.")
    nms_in_graph: bool = Field(default=True, description="False: the head runs class-aware NMS on the K boxes.")
    thresholds: DetectionThresholds = Field(default_factory=DetectionThresholds, description="Device defaults.")

    @property
    def task(self) -> str:
        """The task this contract serves."""
        return "detection"


class YoloHeadSpec(_Strict):
    """Raw YOLO head (Ultralytics v5u/v8/11 export): [B, 4 + classes, N] of cx, cy, w, h and sigmoid scores."""

    format: Literal["yolo"] = Field(description="Raw Ultralytics detection output; the head decodes and runs NMS.")
    output: str | None = Field(default=None, description="Output tensor name; None means the first output.")
    box_space: BoxSpace = Field(default="input_pixels", description="Space of cx, cy, w, h.")
    nms_in_graph: Literal[False] = Field(default=False, description="Always False: the head runs class-aware NMS.")
    thresholds: DetectionThresholds = Field(default_factory=DetectionThresholds, description="Device defaults.")

    @property
    def task(self) -> str:
        """The task this contract serves."""
        return "detection"


class AnomalyHeadSpec(_Strict):
    """One output [B, C]: each window's per-channel anomaly score (non-negative); `reduce` makes the score, alarm above.

    The threshold lives here, not in the graph, so an operator can tune it without retraining; each variant's
    own calibrated threshold is in its metrics (reduced precision shifts errors slightly).
    """

    format: Literal["reconstruction_error"] = Field(description="Per-channel errors of a reconstruction model.")
    output: str | None = Field(default=None, description="Output tensor name; None means the first output.")
    reduce: Literal["max", "mean"] = Field(default="max", description="Window score from its channels' errors.")
    threshold: float = Field(ge=0.0, description="Score above which a window is anomalous (reference model).")
    percentile: float = Field(gt=0.0, lt=100.0, description="Percentile of held-out normal scores it was set at.")
    calibration_windows: int = Field(ge=1, description="Held-out normal windows the percentile was taken over.")

    @property
    def task(self) -> str:
        """The task this contract serves."""
        return "anomaly"


HeadSpec = Annotated[
    ClassificationHeadSpec | DecodedDetectionHeadSpec | PackedDetectionHeadSpec | YoloHeadSpec | AnomalyHeadSpec,
    Field(discriminator="format"),
]
DetectionHeadSpec = DecodedDetectionHeadSpec | PackedDetectionHeadSpec | YoloHeadSpec


def output_names(spec: ClassificationHeadSpec | DetectionHeadSpec | AnomalyHeadSpec) -> list[str]:
    """Output tensor names a contract names explicitly (None-valued 'first output' names are left out)."""
    if isinstance(spec, DecodedDetectionHeadSpec):
        return [n for n in (spec.boxes, spec.scores, spec.class_ids, spec.num_detections) if n is not None]
    return [spec.output] if spec.output is not None else []
