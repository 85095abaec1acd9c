"""The model-package manifest: the one contract between the trainer and every device."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ManifestError
from shared.names import check_file_name, check_ident
from shared.task_contract import (
    AnomalyHeadSpec,
    ClassificationHeadSpec,
    DecodedDetectionHeadSpec,
    HeadSpec,
    PackedDetectionHeadSpec,
    TaskName,
    YoloHeadSpec,
    output_names,
)
from shared.window_recipe import WindowRecipe

# 2: task heads (task + head output contract), letterbox preprocessing, detection metrics. 1 upgrades on parse.
SCHEMA_VERSION = 2
# latest.json did not change with the manifest; its bytes stay as before.
LATEST_SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.json.sig"
LATEST_FILE = "latest.json"
LATEST_SIGNATURE_FILE = "latest.json.sig"
# Devices refuse manifests larger than this before parsing them.
MAX_MANIFEST_BYTES = 1 << 20

Precision = Literal["fp32", "fp16", "int8", "tensorrt"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One model input or output as the runtime sees it."""

    name: str = Field(description="Tensor name in the ONNX graph.")
    shape: list[int | str] = Field(description="Dimensions; strings are symbolic (e.g. 'batch').")
    dtype: str = Field(description="Element type, e.g. 'float32'.")
    layout: str = Field(description="Axis meaning, e.g. 'NCHW' or 'NC'.")


class Preprocess(_Strict):
    """How a device turns a camera frame into the model input."""

    resize: tuple[int, int] = Field(description="Target (height, width) in pixels.")
    channel_order: Literal["gray", "rgb", "bgr"] = Field(description="Channel order the model expects.")
    scale: float = Field(description="Multiplier applied to raw 0-255 pixel values before mean/std.")
    mean: list[float] = Field(description="Per-channel mean subtracted after scaling.")
    std: list[float] = Field(description="Per-channel std divided after mean subtraction.")
    layout: Literal["NCHW", "NHWC"] = Field(default="NCHW", description="Memory layout of the input tensor.")
    invert: bool = Field(default=False, description="Invert intensities (255 - x) before scaling.")
    resize_mode: Literal["stretch", "letterbox"] = Field(
        default="stretch",
        description="stretch: resize to (height, width) as is; letterbox: keep aspect ratio, pad centred.",
    )
    pad_value: int = Field(
        default=114, ge=0, le=255, description="Raw 0-255 pixel value of letterbox padding, before scaling."
    )

    @model_validator(mode="after")
    def _channels_match(self) -> Preprocess:
        channels = 1 if self.channel_order == "gray" else 3
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(f"mean/std need {channels} values for channel_order={self.channel_order}")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self

    @property
    def channels(self) -> int:
        """Number of input channels implied by channel_order."""
        return 1 if self.channel_order == "gray" else 3


class Target(_Strict):
    """The hardware a variant was built or tuned for; engines only run on their exact target."""

    device: Literal["cpu", "cuda", "tensorrt"] = Field(description="Execution device class.")
    cpu_features: list[str] = Field(default_factory=list, description="CPU flags seen at build (avx2, vnni).")
    gpu_name: str | None = Field(default=None, description="GPU the engine was built on.")
    compute_capability: str | None = Field(default=None, description="GPU compute capability, e.g. '8.7'.")
    tensorrt_version: str | None = Field(default=None, description="TensorRT version that built the engine.")
    cuda_version: str | None = Field(default=None, description="CUDA runtime version at build.")


class Quantization(_Strict):
    """How an INT8 variant was quantized, so a device can judge it for its CPU."""

    format: Literal["QDQ", "QOperator"] = Field(description="ONNX quantization format.")
    activation_type: Literal["uint8", "int8"] = Field(description="Activation element type.")
    weight_type: Literal["uint8", "int8"] = Field(description="Weight element type.")
    per_channel: bool = Field(description="Per-channel weight scales.")
    reduce_range: bool = Field(description="7-bit weights to avoid U8S8 saturation without VNNI.")
    calibration_method: str = Field(description="Calibration method, e.g. 'MinMax'.")
    calibration_samples: int = Field(ge=1, description="Number of training images used to calibrate.")
    reason: str = Field(description="Why these settings were chosen for the build CPU.")


class VariantMetrics(_Strict):
    """Figures measured on the held-out test split at build time."""

    accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Top-1 accuracy on the test split (classification)."
    )
    map50: float | None = Field(default=None, ge=0.0, le=1.0, description="mAP@.5 on the test split (detection).")
    map50_95: float | None = Field(
        default=None, ge=0.0, le=1.0, description="mAP@.5:.95 on the test split (detection): its gate figure."
    )
    latency_ms_p50: float = Field(ge=0.0, description="Median batch-1 latency at build, ms.")
    latency_ms_p99: float = Field(ge=0.0, description="99th percentile batch-1 latency at build, ms.")
    agreement: float | None = Field(
        default=None,
        description="Agreement with the trained model: top-1 (classification) or detection F1 at IoU 0.5 (detection).",
    )
    max_abs_diff: float | None = Field(default=None, description="Max |output difference| vs the trained model.")
    f1: float | None = Field(default=None, ge=0.0, le=1.0, description="Macro F1 on the test split (classification).")
    auroc: float | None = Field(
        default=None, ge=0.0, le=1.0, description="AUROC on held-out windows with injected faults (anomaly): its gate."
    )
    false_alarm_rate: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Share of held-out normal windows above `threshold` (anomaly)."
    )
    threshold: float | None = Field(
        default=None, ge=0.0, description="This variant's own anomaly threshold, calibrated like the head's."
    )

    @model_validator(mode="after")
    def _has_quality(self) -> VariantMetrics:
        if self.accuracy is None and self.map50_95 is None and self.auroc is None:
            raise ValueError("variant metrics need accuracy (classification), map50_95 (detection) or auroc (anomaly)")
        return self

    @property
    def quality(self) -> float:
        """The task's gate figure: accuracy for classifiers, mAP@.5:.95 for detectors (variant drops compare it)."""
        value = self.accuracy if self.accuracy is not None else self.map50_95
        value = value if value is not None else self.auroc
        assert value is not None  # the validator guarantees one of them
        return value


class Variant(_Strict):
    """One runnable file of the package."""

    file: str = Field(description="Plain file name inside the version directory.")
    precision: Precision = Field(description="Numeric precision of the variant.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    bytes: int = Field(ge=1, description="File size in bytes.")
    target: Target = Field(description="Hardware the variant was built for.")
    metrics: VariantMetrics = Field(description="Gate figures measured before publishing.")
    quantization: Quantization | None = Field(default=None, description="INT8 settings, for int8 only.")

    _check_file = field_validator("file")(lambda cls, v: check_file_name(v))


class RejectedVariant(_Strict):
    """A variant that failed its gate: recorded so nobody wonders where it went."""

    precision: Precision = Field(description="Precision that was tried.")
    reason: str = Field(description="Which gate failed and by how much.")


class Golden(_Strict):
    """Preprocessed inputs with expected outputs, for a device's smoke test."""

    file: str = Field(description="Plain file name of the .npz (shared.golden: classification or detection form).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    bytes: int = Field(ge=1, description="File size in bytes.")
    count: int = Field(ge=1, description="Number of samples.")

    _check_file = field_validator("file")(lambda cls, v: check_file_name(v))


class DatasetInfo(_Strict):
    """Identity of the training data, so a model can be traced to what it learned from."""

    name: str = Field(description="Data set name or path.")
    sha256: str = Field(description="Content hash over the samples and labels.")
    num_train: int = Field(ge=0, description="Training samples.")
    num_val: int = Field(ge=0, description="Validation samples.")
    num_test: int = Field(ge=0, description="Held-out test samples.")
    skipped_files: int = Field(default=0, ge=0, description="Corrupt images skipped while loading.")


class TrainInfo(_Strict):
    """How the model was trained."""

    config: dict[str, Any] = Field(description="The resolved training config.")
    dataset: DatasetInfo = Field(description="Training data identity.")
    metrics: dict[str, float] = Field(description="Final metrics (val and test).")
    git_commit: str | None = Field(default=None, description="Commit of the training code, if known.")
    seed: int = Field(description="Global seed.")


class Manifest(_Strict):
    """manifest.json: signed description of one model version."""

    schema_version: int = Field(default=SCHEMA_VERSION, description="Manifest schema version.")
    name: str = Field(description="Model name (used in object keys and topics).")
    version: int = Field(ge=1, description="Monotonically increasing version number.")
    created_at: datetime = Field(description="UTC publish time.")
    task: TaskName = Field(default="classification", description="Model task: classification or detection.")
    head: HeadSpec = Field(
        default_factory=ClassificationHeadSpec,
        description="Output contract: what each output means and how results are decoded (default: logits).",
    )
    frameworks: dict[str, str] = Field(description="Versions of torch, onnx, onnxruntime and others.")
    inputs: list[TensorSpec] = Field(min_length=1, description="Model inputs.")
    outputs: list[TensorSpec] = Field(min_length=1, description="Model outputs.")
    # Image models have `preprocess`, sensor models `window`; the property keeps image code typed (see below).
    preprocess_: Preprocess | None = Field(default=None, alias="preprocess", description="Frame-to-tensor recipe.")
    window: WindowRecipe | None = Field(
        default=None, description="Sensor models: readings-to-window recipe (shared.windowing), instead of preprocess."
    )
    labels: list[str] = Field(min_length=1, description="Class names by output index.")
    variants: list[Variant] = Field(min_length=1, description="Runnable variants that passed their gates.")
    rejected: list[RejectedVariant] = Field(default_factory=list, description="Variants that failed.")
    golden: Golden = Field(description="Smoke-test samples.")
    train: TrainInfo = Field(description="Training provenance.")

    _check_name = field_validator("name")(lambda cls, v: check_ident(v, "model name"))
    # The JSON key stays "preprocess"; Python reads the field through the property below.
    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True, validate_by_alias=True,
                              validate_by_name=False)

    @property
    def preprocess(self) -> Preprocess:
        """The image recipe; ManifestError for a sensor model, whose input comes from `window`."""
        if self.preprocess_ is None:
            raise ManifestError(f"model {self.name} v{self.version} is a sensor model (task {self.task}): it has "
                                "a window recipe, not an image preprocess")
        return self.preprocess_

    @field_validator("schema_version")
    @classmethod
    def _known_schema(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise ValueError(f"schema_version {v} is not supported (this build reads {SCHEMA_VERSION})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _only_classifiers_default_their_head(cls, data: Any) -> Any:
        """A classifier's head defaults to today's logits; any other task must state its output contract."""
        task = data.get("task", "classification") if isinstance(data, dict) else "classification"
        if isinstance(data, dict) and "head" not in data and task != "classification":
            raise ValueError(f"a {task} manifest needs a head: the output contract of its model")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [v.file for v in self.variants] + [self.golden.file]
        if len(set(names)) != len(names):
            raise ValueError("file names in a manifest must be unique")
        if MANIFEST_FILE in names or SIGNATURE_FILE in names:
            raise ValueError("variants may not be named like the manifest or its signature")
        if self.head.task != self.task:
            raise ValueError(f"head format {self.head.format!r} is for {self.head.task}, not task {self.task!r}")
        known = [o.name for o in self.outputs]
        missing = [n for n in output_names(self.head) if n not in known]
        if missing:
            raise ValueError(f"head names outputs {missing} the model does not have (outputs: {known})")
        for v in self.variants:
            figure = {"classification": "accuracy", "detection": "map50_95", "anomaly": "auroc"}[self.task]
            if getattr(v.metrics, figure) is None:
                raise ValueError(f"variant {v.file} lacks {figure}, the gate figure of a {self.task} model")
        if (self.preprocess_ is None) == (self.window is None):
            raise ValueError("a manifest needs exactly one input recipe: preprocess (images) or window (sensors)")
        if self.task == "anomaly" and self.window is None:
            raise ValueError("an anomaly model scores sensor windows: it needs a window recipe")
        _check_detection_shapes(self)
        _check_window_shapes(self)
        return self

    def files(self) -> list[tuple[str, str, int]]:
        """Every payload file as (name, sha256, bytes)."""
        out = [(v.file, v.sha256, v.bytes) for v in self.variants]
        out.append((self.golden.file, self.golden.sha256, self.golden.bytes))
        return out

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes: these exact bytes are what gets signed."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


class Latest(_Strict):
    """latest.json: the pointer a device polls to learn of a new version."""

    schema_version: int = Field(default=LATEST_SCHEMA_VERSION, description="Schema version.")
    name: str = Field(description="Model name.")
    version: int = Field(ge=1, description="Newest published version.")
    manifest_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of that manifest.json.")
    published_at: datetime = Field(description="UTC time the pointer moved.")
    expires_at: datetime | None = Field(
        default=None,
        description="UTC time after which devices treat the pointer as stale (freeze attack); re-signed to extend.",
    )

    _check_name = field_validator("name")(lambda cls, v: check_ident(v, "model name"))

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes: these exact bytes are what latest.json.sig signs."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"


def utcnow() -> datetime:
    """Timezone-aware now, so manifests never carry naive times."""
    return datetime.now(timezone.utc)


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest bytes (older schemas upgraded first); ManifestError names the first problem."""
    return _parse(Manifest, data, "manifest.json")


def upgrade_manifest(raw: Any) -> Any:
    """A parsed manifest.json of an older schema as the current schema reads it; other values pass unchanged.

    Schema 1 knew only classifiers whose one output is logits: it becomes task classification, head logits.
    The signature covers the file's bytes, so an old package verifies as before and loads as this says.
    """
    if not isinstance(raw, dict) or raw.get("schema_version") != 1:
        return raw
    if raw.get("task", "classification") != "classification":
        return raw  # let validation name the unknown task
    return {**raw, "schema_version": SCHEMA_VERSION, "task": "classification", "head": {"format": "logits"}}


def _check_detection_shapes(m: Manifest) -> None:
    """Static output dimensions must fit the head and the label count, so a mismatched package fails at parse."""
    head = m.head
    by_name = {o.name: o.shape for o in m.outputs}
    first = m.outputs[0].shape
    n = len(m.labels)
    if isinstance(head, YoloHeadSpec):
        shape = by_name.get(head.output, first) if head.output else first
        if len(shape) != 3:
            raise ValueError(f"a yolo head's output is [batch, 4 + classes, anchors], got {shape}")
        if isinstance(shape[1], int) and shape[1] != 4 + n:
            raise ValueError(f"yolo output has {shape[1]} rows but 4 + {n} labels = {4 + n}")
    elif isinstance(head, PackedDetectionHeadSpec):
        shape = by_name.get(head.output, first) if head.output else first
        if len(shape) != 3 or (isinstance(shape[2], int) and shape[2] != 6):
            raise ValueError(f"a packed head's output is [batch, detections, 6], got {shape}")
    elif isinstance(head, DecodedDetectionHeadSpec):
        boxes = by_name[head.boxes]
        if len(boxes) != 3 or (isinstance(boxes[2], int) and boxes[2] != 4):
            raise ValueError(f"decoded boxes are [batch, detections, 4], got {boxes}")
        for name in (head.scores, head.class_ids):
            shape = by_name[name]
            if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, "1"))):
                raise ValueError(f"decoded {name} is [batch, detections] or [batch, detections, 1], got {shape}")
    elif not isinstance(head, ClassificationHeadSpec | AnomalyHeadSpec):  # pragma: no cover - the union is closed
        raise ValueError(f"unknown head {head!r}")


def _check_window_shapes(m: Manifest) -> None:
    """A sensor model's input is [batch, channels, window] and an anomaly output [batch, channels] of the recipe."""
    if m.window is None:
        return
    c, t = m.window.num_channels, m.window.window
    shape = m.inputs[0].shape
    if len(shape) != 3 or shape[1:] != [c, t]:
        raise ValueError(f"a sensor model's input is [batch, {c}, {t}] for its window recipe, got {shape}")
    if isinstance(m.head, AnomalyHeadSpec):
        by_name = {o.name: o.shape for o in m.outputs}
        out = by_name.get(m.head.output, m.outputs[0].shape) if m.head.output else m.outputs[0].shape
        if len(out) != 2 or out[1] != c:
            raise ValueError(f"an anomaly output is per-channel errors [batch, {c}], got {out}")


def parse_latest(data: bytes) -> Latest:
    """Parse and validate latest.json bytes."""
    return _parse(Latest, data, "latest.json")


def _parse(cls: type[Manifest] | type[Latest], data: bytes, what: str) -> Any:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{what} is {len(data)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON: {exc}") from exc
    if cls is Manifest:
        raw = upgrade_manifest(raw)
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ManifestError(f"{what} invalid at {loc}: {first['msg']}") from exc


def model_prefix(name: str) -> str:
    """Object-key prefix of a model: models/<name>/."""
    return f"models/{check_ident(name, 'model name')}/"


def version_prefix(name: str, version: int) -> str:
    """Object-key prefix of one version: models/<name>/<version>/."""
    if version < 1:
        raise ManifestError(f"version must be >= 1, got {version}")
    return f"{model_prefix(name)}{version}/"


def latest_key(name: str) -> str:
    """Object key of a model's latest.json."""
    return f"{model_prefix(name)}{LATEST_FILE}"


def latest_signature_key(name: str) -> str:
    """Object key of the signature over a model's latest.json."""
    return f"{model_prefix(name)}{LATEST_SIGNATURE_FILE}"
