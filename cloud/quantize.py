"""Static INT8 QDQ quantization with ONNX Runtime, calibrated on training images, typed for the build CPU."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from cloud.cpu_features import CpuInfo
from cloud.errors import ExportError
from shared.manifest import Quantization

log = logging.getLogger(__name__)

Int8Mode = Literal["auto", "u8s8", "u8s8_reduce_range", "u8u8"]
CalibrationName = Literal["minmax", "entropy", "percentile"]
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_CALIBRATION: dict[str, tuple[CalibrationMethod, str]] = {
    "minmax": (CalibrationMethod.MinMax, "MinMax"),
    "entropy": (CalibrationMethod.Entropy, "Entropy"),
    "percentile": (CalibrationMethod.Percentile, "Percentile"),
}
_CALIB_BATCH = 16
# Ops that decide the final scores: keeping them in float is the cheap fix when INT8 loses accuracy.
_HEAD_OPS = frozenset({"Gemm", "MatMul", "Conv"})


@dataclass(frozen=True)
class Int8Plan:
    """Element types and range for one INT8 build, and why they suit the build CPU."""

    mode: str
    activation_type: Literal["uint8", "int8"]
    weight_type: Literal["uint8", "int8"]
    reduce_range: bool
    reason: str


def choose_int8_plan(mode: Int8Mode, cpu: CpuInfo) -> Int8Plan:
    """Pick U8S8 / U8S8 with 7-bit weights / U8U8 for the build CPU (mode auto) or as configured."""
    features = ", ".join(cpu.recorded_features()) or "unknown"
    seen = f"build CPU {cpu.machine or 'unknown'} [{features}]"
    if mode == "u8u8":
        return Int8Plan(mode, "uint8", "uint8", False, f"int8_mode=u8u8 set in config: no saturation on any x86 CPU, "
                        f"but slower than U8S8 on x86 ({seen})")
    if mode == "u8s8_reduce_range":
        return Int8Plan(mode, "uint8", "int8", True, f"int8_mode=u8s8_reduce_range set in config: 7-bit weights "
                        f"avoid U8S8 saturation on CPUs without VNNI ({seen})")
    if mode == "u8s8":
        saturates = cpu.is_x86 and not cpu.vnni
        risk = " (WARNING: this x86 CPU has no VNNI, full-range U8S8 may saturate)" if saturates else ""
        return Int8Plan(mode, "uint8", "int8", False, f"int8_mode=u8s8 set in config{risk} ({seen})")
    vnni = " (this build CPU has VNNI, but the devices may not)" if cpu.is_x86 and cpu.vnni else ""
    return Int8Plan("auto", "uint8", "int8", True, (
        "auto: a package goes to a fleet of mixed CPUs, and x86 without VNNI multiplies U8S8 with int16 "
        "accumulation (VPMADDUBSW) that can saturate; 7-bit weights (reduce_range) are exact on every device "
        "at a small accuracy cost, at full U8S8 speed (U8U8 is slower). Set int8_mode=u8s8 for fleets that all "
        f"have VNNI or ARM dot-product{vnni} ({seen})"
    ))


def calibration_subset(calib_inputs: np.ndarray, samples: int, seed: int = 0) -> np.ndarray:
    """At most `samples` images, drawn without replacement by a fixed seed so builds are reproducible."""
    if calib_inputs.shape[0] <= samples:
        return calib_inputs
    idx = np.sort(np.random.default_rng(seed).choice(calib_inputs.shape[0], size=samples, replace=False))
    return calib_inputs[idx]


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds preprocessed training images to the calibrator in small batches."""

    def __init__(self, inputs: np.ndarray, input_name: str = "input", batch: int = _CALIB_BATCH) -> None:
        self._inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self._name = input_name
        self._batch = batch
        self._it = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, self._inputs.shape[0], self._batch):
            yield {self._name: self._inputs[start : start + self._batch]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when all were read."""
        return next(self._it, None)

    def rewind(self) -> None:
        """Start over (the calibrator may read the data twice)."""
        self._it = self._batches()


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Gemm/MatMul/Conv nodes nearest each graph output: the classifier that sets the scores."""
    producers = {out: node for node in model.graph.node for out in node.output}
    found: list[str] = []
    for output in model.graph.output:
        frontier, seen = [output.name], set()
        while frontier:
            node = producers.get(frontier.pop())
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if node.op_type in _HEAD_OPS:
                if node.name and node.name not in found:
                    found.append(node.name)
                continue
            frontier.extend(node.input)
    return found


def count_qdq(model: onnx.ModelProto) -> int:
    """Number of QuantizeLinear/DequantizeLinear nodes."""
    return sum(node.op_type in QDQ_OPS for node in model.graph.node)


def float_input_readers(model: onnx.ModelProto, int8_ops: set[str]) -> int:
    """Let every node of an op type left in float read the float graph input instead of its INT8 round trip.

    The quantizer puts one Quantize/Dequantize pair on an input that a quantized node reads and rewires every
    reader to it, so nodes left in float would see the input rounded to 256 levels. Chosen by op type, not name:
    a node without a name cannot be named in keep_float, and it reads the input all the same. Returns how many
    inputs moved.
    """
    nodes = model.graph.node
    inputs = {i.name for i in model.graph.input}
    quantized_from = {n.output[0]: n.input[0] for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] in inputs}
    source = {n.output[0]: quantized_from[n.input[0]] for n in nodes
              if n.op_type == "DequantizeLinear" and n.input[0] in quantized_from}
    changed = 0
    for node in nodes:
        if node.op_type in int8_ops or node.op_type in QDQ_OPS:
            continue
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = source[name]
                changed += 1
    return changed


def quantize_int8(
    fp32_path: Path,
    out_path: Path,
    calib_inputs: np.ndarray,
    plan: Int8Plan,
    *,
    samples: int,
    calibration: CalibrationName = "minmax",
    float_head: bool = False,
    input_name: str = "input",
    keep_float: Callable[[onnx.ModelProto], list[str]] | None = None,
    skip_symbolic_shape: bool = False,
    calibration_batch: int = _CALIB_BATCH,
) -> Quantization:
    """Write a per-channel QDQ INT8 model to out_path; nothing is left there when it fails.

    keep_float picks further nodes of the pre-processed graph to leave in float (a detector's decode tail, or a
    sensor model's features); nodes of the op types it leaves wholly in float read the float graph input, not its
    INT8 round trip;
    skip_symbolic_shape for graphs whose data-dependent shapes (TopK decode) symbolic inference cannot follow;
    calibration_batch 1 for models exported with a fixed batch of one (Ultralytics' default).
    """
    if calib_inputs.ndim < 2 or calib_inputs.shape[0] == 0:
        raise ExportError(f"INT8 calibration needs training images, got an array of shape {calib_inputs.shape}")
    calib = calibration_subset(calib_inputs, samples)
    pre_path = out_path.with_name(f".{out_path.name}.pre.onnx")
    tmp_path = out_path.with_name(f".{out_path.name}.tmp")
    method, method_name = _CALIBRATION[calibration]
    try:
        quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=skip_symbolic_shape)
        pre = onnx.load(str(pre_path), load_external_data=False)
        exclude = head_nodes(pre) if float_head else []
        # Node names are those of the pre-processed graph, so a caller's choice is made on it, here.
        exclude += [n for n in (keep_float(pre) if keep_float is not None else []) if n not in exclude]
        quantize_static(
            str(pre_path),
            str(tmp_path),
            ArrayCalibrationReader(calib, input_name, calibration_batch),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=plan.reduce_range,
            activation_type=QuantType.QUInt8 if plan.activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QUInt8 if plan.weight_type == "uint8" else QuantType.QInt8,
            nodes_to_exclude=exclude or None,
            calibrate_method=method,
        )
        quantized = onnx.load(str(tmp_path))
        if keep_float is not None:
            int8_ops = {n.op_type for n in pre.graph.node if n.name and n.name not in exclude}
            if float_input_readers(quantized, int8_ops):
                onnx.checker.check_model(quantized)
                onnx.save(quantized, str(tmp_path))
        qdq = count_qdq(quantized)
        if qdq == 0:
            raise ExportError("INT8 quantization produced no QuantizeLinear/DequantizeLinear nodes")
        os.replace(tmp_path, out_path)
    except ExportError:
        raise
    except Exception as exc:  # onnxruntime.quantization and the runtime raise assorted types; re-raised as ours
        raise ExportError(f"INT8 quantization failed: {type(exc).__name__}: {str(exc).strip()[:500]}") from exc
    finally:
        pre_path.unlink(missing_ok=True)
        tmp_path.unlink(missing_ok=True)
    log.info("int8: %d QDQ nodes, %s, reduce_range=%s, %d calibration images%s", qdq,
             f"{plan.activation_type}/{plan.weight_type}", plan.reduce_range, calib.shape[0],
             f", kept in float: {', '.join(exclude)}" if exclude and keep_float is None
             else f", {len(exclude)} nodes kept in float" if exclude else "")
    if keep_float is None:
        reason = plan.reason + (f"; classifier kept in float ({', '.join(exclude)})" if exclude else "")
    else:  # a decode tail is dozens of small ops: name its layers, count the rest
        layers = [n for n in exclude if n in {node.name for node in pre.graph.node if node.op_type in _HEAD_OPS}]
        reason = plan.reason + (f"; head tail kept in float ({len(exclude)} nodes: layers {', '.join(layers)} "
                                "and the decode after them)" if exclude else "")
    return Quantization(
        format="QDQ",
        activation_type=plan.activation_type,
        weight_type=plan.weight_type,
        per_channel=True,
        reduce_range=plan.reduce_range,
        calibration_method=method_name,
        calibration_samples=int(calib.shape[0]),
        reason=reason,
    )
