"""An external ONNX file read and checked before anything is built from it: size, parse, self-contained, valid.

Every refusal is one ModelRefused line naming the file and what to do; the file is never executed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError, Message
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from cloud.errors import ModelRefused


@dataclass(frozen=True)
class Limits:
    """What a model file may be before it is called absurd: bytes on disk, image sides, batch, output size."""

    max_file_bytes: int = 1 << 30  # YOLO11x is ~220 MB; protobuf itself stops at 2 GiB
    min_side: int = 8
    max_side: int = 4096
    max_batch: int = 64
    max_output_values: int = 50_000_000  # per image; a yolo head at 1280 px with 80 classes is ~2.9 M
    max_labels: int = 10_000


def iter_tensors(message: Message) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in an ONNX message: initializers, attributes, subgraphs, functions (as edge's guard walks)."""
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        for item in [value] if isinstance(value, Message) else value:
            if isinstance(item, onnx.TensorProto):
                yield item
            yield from iter_tensors(item)


def load_model(path: Path, limits: Limits) -> onnx.ModelProto:
    """Parse the file without following external data; refuse what is missing, too large, unreadable or empty."""
    if not path.is_file():
        raise ModelRefused(f"{path}: not found (give the .onnx file to package)")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ModelRefused(f"{path}: {size:,} bytes is over the {limits.max_file_bytes:,}-byte limit for a model file")
    if size == 0:
        raise ModelRefused(f"{path}: the file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise ModelRefused(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
        raise ModelRefused(f"{path}: not an ONNX model (no IR version, nodes or outputs after parsing)")
    return model


def refuse_external_data(model: onnx.ModelProto, path: Path) -> None:
    """A package variant is one self-contained file: weights in a side file are refused, naming it."""
    for tensor in iter_tensors(model):
        if uses_external_data(tensor):
            try:
                where = ExternalDataInfo(tensor).location
            except ValueError:
                where = "?"
            raise ModelRefused(
                f"{path}: tensor {tensor.name!r} keeps its data in the external file {where!r}; save a self-contained "
                "model first (onnx.save(onnx.load(path), out) for files under 2 GB)"
            )


def check_valid(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """onnx.checker and strict shape inference; returns the model with inferred shapes."""
    try:
        onnx.checker.check_model(model, full_check=False)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelRefused(f"{path}: fails onnx.checker: {_first_line(exc)}") from exc
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        raise ModelRefused(f"{path}: fails ONNX shape inference: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def read_checked(path: Path, limits: Limits) -> onnx.ModelProto:
    """The file's model with inferred shapes, after every file-level check passed."""
    model = load_model(path, limits)
    refuse_external_data(model, path)
    return check_valid(model, path)
