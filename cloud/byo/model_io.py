"""An external model's input and outputs, and the output contract (task head) they fit with the package's labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import onnx
from onnx import TensorProto

from cloud.byo.onnx_file import Limits
from cloud.errors import ModelRefused
from shared.task_contract import (
    ClassificationHeadSpec,
    DecodedDetectionHeadSpec,
    DetectionHeadSpec,
    PackedDetectionHeadSpec,
    YoloHeadSpec,
)

Dims = list[int | str]
HeadFormat = Literal["auto", "yolo", "packed", "decoded", "logits", "probabilities"]
DETECTION_FORMATS = ("yolo", "packed", "decoded")
CLASSIFICATION_FORMATS = ("logits", "probabilities")


@dataclass(frozen=True)
class ModelIO:
    """One image input (name, dims, layout) and the outputs by name, in graph order."""

    input_name: str
    input_dims: Dims
    layout: Literal["NCHW", "NHWC"]
    outputs: dict[str, Dims]
    output_producers: dict[str, str]

    @property
    def channels(self) -> int:
        """1 (gray) or 3 (colour) input channels."""
        c = self.input_dims[1] if self.layout == "NCHW" else self.input_dims[3]
        assert isinstance(c, int)
        return c

    @property
    def hw(self) -> tuple[int, int] | None:
        """Fixed (height, width) of the input, or None when either is symbolic."""
        h, w = self.input_dims[2:4] if self.layout == "NCHW" else self.input_dims[1:3]
        return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _dims(value: onnx.ValueInfoProto) -> Dims:
    return [d.dim_param or "?" if not d.HasField("dim_value") else int(d.dim_value)
            for d in value.type.tensor_type.shape.dim]


def read_io(model: onnx.ModelProto, limits: Limits, where: str) -> ModelIO:
    """The graph's one float image input [N, C, H, W] (or NHWC) of sane sizes, and its outputs."""
    weights = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ModelRefused(f"{where}: the model has {len(inputs)} inputs {[i.name for i in inputs]}; "
                           "a camera model takes one image tensor")
    value = inputs[0]
    dims = _dims(value)
    if value.type.tensor_type.elem_type != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(value.type.tensor_type.elem_type)
        raise ModelRefused(f"{where}: input {value.name!r} is {kind}; devices feed float32 images")
    if len(dims) != 4:
        raise ModelRefused(f"{where}: input {value.name!r} is {dims}; expected an image batch [N, C, H, W]")
    layout: Literal["NCHW", "NHWC"] = "NCHW" if dims[1] in (1, 3) else "NHWC"
    if layout == "NHWC" and dims[3] not in (1, 3):
        raise ModelRefused(f"{where}: input {value.name!r} is {dims}: neither NCHW nor NHWC with 1 or 3 channels")
    batch = dims[0]
    if isinstance(batch, int) and not 1 <= batch <= limits.max_batch:
        raise ModelRefused(f"{where}: input batch {batch} is outside 1..{limits.max_batch}")
    sides = dims[2:4] if layout == "NCHW" else dims[1:3]
    for side in sides:
        if isinstance(side, int) and not limits.min_side <= side <= limits.max_side:
            raise ModelRefused(f"{where}: input {value.name!r} is {dims}; image sides must be "
                               f"{limits.min_side}..{limits.max_side} pixels")
    outputs = {o.name: _dims(o) for o in model.graph.output}
    for name, out in outputs.items():
        per_image = 1
        for d in out[1:]:
            per_image *= d if isinstance(d, int) else 1
        if any(isinstance(d, int) and d < 0 for d in out) or per_image > limits.max_output_values:
            raise ModelRefused(f"{where}: output {name!r} is {out}, over {limits.max_output_values:,} values per image")
    producers = {out: node.op_type for node in model.graph.node for out in node.output if out in outputs}
    return ModelIO(value.name, dims, layout, outputs, producers)


def _fixed(d: int | str) -> int | None:
    return d if isinstance(d, int) else None


def detection_head(fmt: str, io: ModelIO, labels: list[str], where: str) -> DetectionHeadSpec:
    """yolo [B, 4+nc, N], packed [B, K, 6] or decoded boxes/scores/class_ids outputs; auto picks by shape."""
    n = len(labels)
    first_name, first = next(iter(io.outputs.items()))
    if fmt == "auto":
        if {"boxes", "scores", "class_ids"} <= io.outputs.keys():
            fmt = "decoded"
        elif len(first) == 3 and _fixed(first[1]) == 4 + n:
            fmt = "yolo"
        elif len(first) == 3 and _fixed(first[2]) == 6:
            fmt = "packed"
        elif len(first) == 3 and isinstance(first[1], int) and first[1] > 4:
            raise ModelRefused(f"{where}: output {first_name!r} is {first}: a yolo head with {first[1] - 4} classes, "
                               f"but there are {n} labels")
        else:
            raise ModelRefused(f"{where}: cannot tell the detection output format from {io.outputs}; expected yolo "
                               f"[batch, 4 + {n}, anchors], packed [batch, detections, 6], or outputs named boxes, "
                               "scores and class_ids (give --format)")
    if fmt == "decoded":
        missing = [k for k in ("boxes", "scores", "class_ids") if k not in io.outputs]
        if missing:
            raise ModelRefused(f"{where}: --format decoded needs outputs {missing} (the model has {list(io.outputs)})")
        return DecodedDetectionHeadSpec(
            format="decoded", num_detections="num_detections" if "num_detections" in io.outputs else None)
    if len(io.outputs) != 1:
        raise ModelRefused(f"{where}: a {fmt} head has one output; the model has {list(io.outputs)}")
    if len(first) != 3:
        raise ModelRefused(f"{where}: output {first_name!r} is {first}; a {fmt} head's output has 3 axes")
    if fmt == "yolo":
        rows = _fixed(first[1])
        if rows is not None and rows != 4 + n:
            raise ModelRefused(f"{where}: output {first_name!r} is {first}: {rows - 4} class rows after the 4 box "
                               f"rows, but there are {n} labels")
        return YoloHeadSpec(format="yolo")
    if fmt == "packed":
        if _fixed(first[2]) not in (6, None):
            raise ModelRefused(f"{where}: output {first_name!r} is {first}; packed detections are [batch, K, 6]")
        return PackedDetectionHeadSpec(format="packed")
    raise ModelRefused(f"{where}: --format {fmt} is not a detection format ({', '.join(DETECTION_FORMATS)})")


def classification_head(fmt: str, io: ModelIO, labels: list[str], where: str) -> ClassificationHeadSpec:
    """One [B, classes] output; auto reads probabilities when the graph ends in Softmax, logits otherwise."""
    if len(io.outputs) != 1:
        raise ModelRefused(f"{where}: a classifier has one output; the model has {list(io.outputs)}")
    name, dims = next(iter(io.outputs.items()))
    classes = _fixed(dims[-1]) if dims else None
    if len(dims) != 2 or (classes is not None and classes != len(labels)):
        raise ModelRefused(f"{where}: output {name!r} is {dims}, but {len(labels)} labels need [batch, {len(labels)}]")
    if fmt == "auto":
        fmt = "probabilities" if io.output_producers.get(name) == "Softmax" else "logits"
    if fmt not in CLASSIFICATION_FORMATS:
        raise ModelRefused(f"{where}: --format {fmt} is not a classification format "
                           f"({', '.join(CLASSIFICATION_FORMATS)})")
    return ClassificationHeadSpec(format=fmt)  # type: ignore[arg-type]
