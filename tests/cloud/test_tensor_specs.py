"""The manifest's inputs and outputs read from any ONNX file, the trainer's or one a user brings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cloud.export_onnx import tensor_specs


def _old_ir_model(path: Path) -> Path:
    """A graph as older exporters wrote it: its weight listed among the inputs, and one output axis unnamed."""
    weight = numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), "weight")
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3])
    listed_weight = helper.make_tensor_value_info("weight", TensorProto.FLOAT, [2, 3])
    out = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 2])
    out.type.tensor_type.shape.dim[1].Clear()  # neither a size nor a name
    graph = helper.make_graph([helper.make_node("Gemm", ["images", "weight"], ["scores"], transB=1)], "old",
                              [image, listed_weight], [out], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_weights_listed_as_graph_inputs_are_not_model_inputs_and_an_unknown_axis_stays_unknown(
    tmp_path: Path,
) -> None:
    inputs, outputs = tensor_specs(_old_ir_model(tmp_path / "old.onnx"))
    assert [(s.name, s.shape, s.dtype) for s in inputs] == [("images", ["batch", 3], "float32")]
    assert [(s.name, s.shape, s.dtype) for s in outputs] == [("scores", ["batch", "?"], "float32")]
