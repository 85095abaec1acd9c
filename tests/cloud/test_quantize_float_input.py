"""INT8 with nodes kept in float that read the graph input: they read the float readings, not 256 levels of them
(a sensor model's "flat channel" feature fired on quiet channels whose INT8-rounded readings repeated)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from cloud.cpu_features import CpuInfo
from cloud.quantize import QDQ_OPS, choose_int8_plan, quantize_int8
from cloud.sensor.export import convolutions_only

PLAN = choose_int8_plan("auto", CpuInfo("x86_64", frozenset({"avx2"})))


class ConvAndSpread(nn.Module):
    """[N, 2, 32] readings -> a conv's mean and the readings' own spread (max - min) per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spread = x.amax(dim=2) - x.amin(dim=2)
        return torch.cat([self.conv(x).mean(dim=2), spread], dim=1)


def _fp32(path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ConvAndSpread().eval(), (torch.zeros(2, 2, 32),), str(path), input_names=["input"],
                          output_names=["out"], opset_version=17, dynamo=False,
                          dynamic_axes={"input": {0: "batch"}, "out": {0: "batch"}})
    return path


def _all_but_convs(model: onnx.ModelProto) -> list[str]:
    return [n.name for n in model.graph.node if n.op_type != "Conv" and n.op_type not in QDQ_OPS and n.name]


def _readers_of_input(path: Path) -> dict[str, str]:
    model = onnx.load(str(path))
    return {n.op_type: "float" if "input" in n.input else "int8" for n in model.graph.node
            if n.op_type in ("Conv", "ReduceMax", "ReduceMin")}


def test_float_nodes_read_the_float_input_and_see_a_spread_below_one_int8_step(tmp_path: Path) -> None:
    fp32 = _fp32(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 10, size=(64, 2, 32)).astype(np.float32)
    quiet = np.zeros((1, 2, 32), dtype=np.float32)
    quiet[0, 1, ::2] = 0.01  # far below one step of a range of about +-30 in 256 levels
    out = tmp_path / "m.int8.onnx"
    quantize_int8(fp32, out, calib, PLAN, samples=64, keep_float=_all_but_convs)
    assert _readers_of_input(out) == {"Conv": "int8", "ReduceMax": "float", "ReduceMin": "float"}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    spread = session.run(None, {"input": quiet})[0][0, 2:]
    np.testing.assert_allclose(spread, [0.0, 0.01], atol=1e-6)


def _unnamed_reader(path: Path) -> Path:
    """[N, 2, 32] -> a named conv's mean and the spread per channel, its ReduceMax an unnamed node."""
    weight = numpy_helper.from_array(np.random.default_rng(1).normal(0, 0.3, (2, 2, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv", pads=[1, 1]),
        helper.make_node("ReduceMean", ["c"], ["m"], name="mean", axes=[2], keepdims=0),
        helper.make_node("ReduceMax", ["input"], ["hi"], axes=[2], keepdims=0),  # no name
        helper.make_node("ReduceMin", ["input"], ["lo"], name="min", axes=[2], keepdims=0),
        helper.make_node("Sub", ["hi", "lo"], ["spread"], name="spread"),
        helper.make_node("Concat", ["m", "spread"], ["out"], name="cat", axis=1),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 32])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_an_unnamed_float_node_reading_the_input_reads_the_float_readings_too(tmp_path: Path) -> None:
    fp32 = _unnamed_reader(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    calib = rng.normal(0, 10, size=(64, 2, 32)).astype(np.float32)
    quiet = np.zeros((1, 2, 32), dtype=np.float32)
    quiet[0, 1, ::2] = 0.01  # far below one INT8 step
    out = tmp_path / "m.int8.onnx"
    quantize_int8(fp32, out, calib, PLAN, samples=64, keep_float=convolutions_only)  # the sensor export's choice
    assert _readers_of_input(out) == {"Conv": "int8", "ReduceMax": "float", "ReduceMin": "float"}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    spread = session.run(None, {"input": quiet})[0][0, 2:]
    np.testing.assert_allclose(spread, [0.0, 0.01], atol=1e-6)
