"""Which ONNX ops each device runtime can run: an external model with an op its target runtimes lack is refused.

ONNX Runtime's list is read from the installed build's CPU kernel registry (plus ops ONNX defines as functions,
which it inlines). OpenVINO's and TensorRT's are written down from their documentation (OpenVINO ONNX frontend
supported-operations list; onnx-tensorrt operators.md for TensorRT 10), default domain only: an op outside them is
refused for that target even where a newer release might run it, since a device that cannot load a package is
worse than a refusal at packaging time.
"""

from __future__ import annotations

import functools
from collections import Counter

import onnx
from onnx import defs

from cloud.errors import ModelRefused
from edge.backends.capabilities import ONNXRUNTIME, OPENVINO, TENSORRT

DEFAULT_DOMAIN = "ai.onnx"


def _names(text: str) -> frozenset[str]:
    """Op names written as whitespace-separated words."""
    return frozenset(text.split())


# The vision ops both documented lists share: convolutional backbones, detection heads and their decodes.
_COMMON = _names("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish Hardmax
Identity If InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop
LpNormalization LRN LSTM MatMul Max MaxPool Mean Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
Pow PRelu QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth
Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""")
OPENVINO_OPS = _COMMON | _names("""
BitShift BitwiseAnd BitwiseNot BitwiseOr BitwiseXor BlackmanWindow Col2Im Compress ConcatFromSequence
DeformConv DFT DynamicQuantizeLinear HammingWindow HannWindow LpPool MatMulInteger MaxRoiPool
MeanVarianceNormalization Multinomial QLinearConv QLinearMatMul RandomNormal RandomNormalLike RandomUniform
RandomUniformLike STFT SequenceAt SequenceConstruct SequenceEmpty SequenceInsert SequenceLength SplitToSequence
Unique
""")
TENSORRT_OPS = _COMMON | _names("""
AffineGrid BlackmanWindow DeformConv HammingWindow HannWindow LpPool ParametricSoftplus RandomNormal
RandomNormalLike RandomUniform RandomUniformLike ScaledTanh
""")
RUNTIME_NAMES = (ONNXRUNTIME, OPENVINO, TENSORRT)


@functools.lru_cache(maxsize=1)
def onnxruntime_ops() -> frozenset[tuple[str, str]]:
    """(domain, op) pairs the installed ONNX Runtime runs on a CPU, plus ONNX function ops it expands."""
    from onnxruntime.capi import _pybind_state

    found = {(k.domain or DEFAULT_DOMAIN, k.op_name) for k in _pybind_state.get_all_opkernel_def()
             if k.provider == "CPUExecutionProvider"}
    found.add((DEFAULT_DOMAIN, "Constant"))
    found |= {(DEFAULT_DOMAIN, s.name) for s in defs.get_all_schemas_with_history()
              if s.domain in ("", DEFAULT_DOMAIN) and (getattr(s, "has_function", False)
                                                       or getattr(s, "has_context_dependent_function", False))}
    return frozenset(found)


def supported(runtime: str) -> frozenset[tuple[str, str]]:
    """(domain, op) pairs a runtime runs."""
    if runtime == ONNXRUNTIME:
        return onnxruntime_ops()
    table = {OPENVINO: OPENVINO_OPS, TENSORRT: TENSORRT_OPS}.get(runtime)
    if table is None:
        raise ModelRefused(f"unknown target runtime {runtime!r}; choose from {', '.join(RUNTIME_NAMES)}")
    return frozenset((DEFAULT_DOMAIN, op) for op in table)


def graph_ops(model: onnx.ModelProto) -> Counter[tuple[str, str]]:
    """(domain, op) of every node, in subgraphs too, with how often it occurs."""
    found: Counter[tuple[str, str]] = Counter()

    def walk(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found[(node.domain or DEFAULT_DOMAIN, node.op_type)] += 1
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    walk(sub)

    walk(model.graph)
    return found


def check_ops(model: onnx.ModelProto, runtimes: list[str], where: str) -> None:
    """Refuse in one line, naming the ops and the runtime, when a target runtime lacks any op of the graph."""
    ops = graph_ops(model)
    for runtime in runtimes:
        missing = sorted(op for op in ops if op not in supported(runtime))
        if missing:
            names = ", ".join(op if domain == DEFAULT_DOMAIN else f"{domain}:{op}" for domain, op in missing)
            raise ModelRefused(f"{where}: {runtime} cannot run op(s) {names}; re-export without them or drop "
                               f"{runtime} from --target-runtime")
