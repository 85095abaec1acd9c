"""FP16 detector with float32 outputs: the converter leaves some decode outputs in float16, so they are cast back.

Devices read boxes and scores as float32 whatever the variant, like the input they feed.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from cloud.errors import ExportError
from cloud.export_onnx import convert_fp16


def float32_outputs(model: onnx.ModelProto) -> int:
    """Cast every float16 graph output back to float32 in place; returns how many were cast."""
    cast = 0
    for output in model.graph.output:
        t = output.type.tensor_type
        if t.elem_type != TensorProto.FLOAT16:
            continue
        inner = f"{output.name}_fp16"
        for node in model.graph.node:
            node.output[:] = [inner if o == output.name else o for o in node.output]
            node.input[:] = [inner if i == output.name else i for i in node.input]
        model.graph.node.append(helper.make_node("Cast", [inner], [output.name], name=f"{output.name}_to_float32",
                                                 to=TensorProto.FLOAT))
        t.elem_type = TensorProto.FLOAT
        cast += 1
    return cast


def convert_detector_fp16(fp32_path: Path, out_path: Path) -> Path:
    """The shared FP16 conversion (float32 input), then float32 outputs; nothing is left when it fails."""
    convert_fp16(fp32_path, out_path)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        model = onnx.load(str(out_path))
        if float32_outputs(model):
            onnx.checker.check_model(model)
            onnx.save(model, str(tmp))
            os.replace(tmp, out_path)
    except Exception as exc:  # onnx raises assorted types; re-raised as our family
        out_path.unlink(missing_ok=True)
        raise ExportError(f"FP16 output cast failed: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return out_path
