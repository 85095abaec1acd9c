"""torch -> ONNX FP32 (dynamic batch, input 'input', output 'logits') and FP32 -> FP16 with float32 I/O."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx
import torch
from onnx import helper
from onnxconverter_common import float16
from torch import nn

from cloud.errors import ExportError
from shared.manifest import TensorSpec

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "batch"
Exporter = Literal["auto", "torchscript", "dynamo"]
# The dynamo exporter emits opset 18 natively; its down-conversion to 17 fails on ReduceMean's axes input.
_DYNAMO_MIN_OPSET = 18
# Batch 2 for the example input: torch.export specializes a dimension of size 1.
_EXAMPLE_BATCH = 2
_LAYOUTS = {4: "NCHW", 2: "NC"}


@dataclass(frozen=True)
class ExportedOnnx:
    """An exported, checked ONNX file and how it was made."""

    path: Path
    opset: int
    exporter: str


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        # torch >= 2.9 warns on every legacy export; the deprecation is handled by the dynamo fallback.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
        )


def _dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=max(opset, _DYNAMO_MIN_OPSET),
            dynamo=True,
            external_data=False,
            verbose=False,
            dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
        )


def _run_exporter(name: str, model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """One exporter attempt; any failure of torch's exporters becomes ExportError with its message."""
    fn = _torchscript if name == "torchscript" else _dynamo
    try:
        with torch.no_grad():
            fn(model, example, path, opset)
    except Exception as exc:  # torch's exporters raise many unrelated types; re-raised as our family
        raise ExportError(f"{name} exporter failed: {type(exc).__name__}: {str(exc).strip()[:500]}") from exc


def check_exported(model: onnx.ModelProto, input_shape: tuple[int, ...]) -> None:
    """The contract devices rely on: one float input 'input' [batch, C, H, W], output 'logits' [batch, classes]."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported ONNX fails onnx.checker: {exc}") from exc
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise ExportError(f"exported ONNX has inputs {inputs} and outputs {outputs}; expected ['input'] and ['logits']")
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param == "" or dims[0].HasField("dim_value"):
            raise ExportError(f"exported ONNX {value.name!r} has no dynamic batch axis")
    spatial = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    if tuple(spatial) != tuple(input_shape):
        raise ExportError(f"exported ONNX input is {spatial}, the model was exported for {list(input_shape)}")


def export_fp32(
    model: nn.Module, input_shape: tuple[int, ...], out_path: Path, opset: int = 17, exporter: Exporter = "auto"
) -> ExportedOnnx:
    """Export the eval-mode CPU model; auto tries the TorchScript exporter (exact opset) and falls back to dynamo."""
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; devices need opset >= 17")
    model = model.eval().cpu()
    example = torch.randn(_EXAMPLE_BATCH, *input_shape, generator=torch.Generator().manual_seed(0))
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    errors: list[str] = []
    try:
        for name in order:
            try:
                _run_exporter(name, model, example, tmp, opset)
                exported = onnx.load(str(tmp))
                check_exported(exported, input_shape)
            except ExportError as exc:
                errors.append(str(exc))
                log.warning("fp32: %s", exc)
                continue
            os.replace(tmp, out_path)
            actual = next((o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")), opset)
            log.info("fp32: exported with the %s exporter at opset %d", name, actual)
            return ExportedOnnx(out_path, int(actual), name)
    finally:
        tmp.unlink(missing_ok=True)
    raise ExportError("ONNX export failed: " + "; ".join(errors))


def convert_fp16(fp32_path: Path, out_path: Path) -> Path:
    """FP16 weights and math with float32 input/output, so device preprocessing stays the same."""
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        model = onnx.load(str(fp32_path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # per-value "truncated to fp16" notices
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
        onnx.checker.check_model(converted)
        onnx.save(converted, str(tmp))
        os.replace(tmp, out_path)
    except Exception as exc:  # onnxconverter-common raises assorted types; re-raised as our family
        raise ExportError(f"FP16 conversion failed: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def tensor_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The manifest's inputs and outputs as the ONNX graph declares them (the trainer's files and brought ones).

    Weights that older files also list among the graph inputs are not inputs; an axis with neither a size nor a
    name is "?".
    """
    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        t = value.type.tensor_type
        shape: list[int | str] = [int(d.dim_value) if d.HasField("dim_value") else d.dim_param or "?"
                                  for d in t.shape.dim]
        dtype = str(helper.tensor_dtype_to_np_dtype(t.elem_type))
        layout = _LAYOUTS.get(len(shape), f"rank{len(shape)}")
        return TensorSpec(name=value.name, shape=shape, dtype=dtype, layout=layout)

    inputs = [spec(v) for v in model.graph.input if v.name not in weights]
    return inputs, [spec(v) for v in model.graph.output]
