"""The detector to ONNX: one float input 'input' [batch, 3, H, W]; outputs boxes, scores, class_ids decoded in graph."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import onnx
import torch

from cloud.detection.model import DetectorExport
from cloud.errors import ExportError

INPUT_NAME = "input"
OUTPUT_NAMES = ("boxes", "scores", "class_ids")
BATCH_DIM = "batch"
# The decode ops (Sigmoid, MaxPool, TopK, GatherElements) are all in opset 17 with the semantics used here.
OPSET = 17


def export_detector(model: DetectorExport, input_shape: tuple[int, int, int], out_path: Path,
                    opset: int = OPSET) -> Path:
    """Export with the TorchScript exporter (exact opset, dynamic batch) and check the output contract."""
    model = model.eval().cpu()
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    axes = {INPUT_NAME: {0: BATCH_DIM}, **{name: {0: BATCH_DIM} for name in OUTPUT_NAMES}}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # torch's legacy-exporter deprecation and tracer notices
            torch.onnx.export(
                model, (example,), str(tmp), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                opset_version=opset, dynamo=False, do_constant_folding=True, dynamic_axes=axes,
            )
        check_detector_onnx(onnx.load(str(tmp)), input_shape, model.top_k)
        os.replace(tmp, out_path)
    except ExportError:
        raise
    except Exception as exc:  # torch's exporter raises many unrelated types; re-raised as our family
        raise ExportError(f"detector ONNX export failed: {type(exc).__name__}: {str(exc).strip()[:500]}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def check_detector_onnx(model: onnx.ModelProto, input_shape: tuple[int, ...], top_k: int) -> None:
    """The contract devices rely on: input [batch, C, H, W]; boxes [batch, K, 4], scores and class_ids [batch, K]."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"exported detector fails onnx.checker: {exc}") from exc
    outputs = [o.name for o in model.graph.output]
    if [i.name for i in model.graph.input] != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise ExportError(f"exported detector has outputs {outputs}; expected {list(OUTPUT_NAMES)}")
    spatial = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:]
    if tuple(spatial) != tuple(input_shape):
        raise ExportError(f"exported detector input is {spatial}, expected {list(input_shape)}")
    k_dims = [o.type.tensor_type.shape.dim[1].dim_value for o in model.graph.output]
    if any(k not in (0, top_k) for k in k_dims):
        raise ExportError(f"exported detector returns {k_dims} detections, expected top_k={top_k}")
