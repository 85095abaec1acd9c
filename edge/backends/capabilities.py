"""What each runtime can run (variant precisions, devices, inference hints, ISA needs), declared in one table."""

from __future__ import annotations

from dataclasses import dataclass

from edge.backends.base import Hardware

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
TENSORRT = "tensorrt"
RUNTIMES = (TENSORRT, OPENVINO, ONNXRUNTIME)

# Any of these says the CPU is x86 (flag sets in configs and tests are often partial).
X86_FLAGS = frozenset({"sse2", "sse4_2", "avx", "avx2"})
# Inference precision hints; "f32" is every runtime's native precision (what the variant file says).
F32 = "f32"
HINTS = (F32, "bf16", "f16")
# OpenVINO reports per device what it can compute in OPTIMIZATION_CAPABILITIES; a hint needs its entry.
OPENVINO_HINT_NEEDS = {"bf16": "BF16", "f16": "FP16"}


@dataclass(frozen=True)
class Capability:
    """One runtime's reach: consulted by its backend's can_run and by the candidate choice."""

    runtime: str
    precisions: frozenset[str]  # variant precisions it loads
    cpu_precisions: frozenset[str]  # the subset it runs on a CPU (the rest need a GPU)
    devices: tuple[str, ...]
    hints: tuple[str, ...]  # inference precision hints it can apply on top of a variant
    needs: str  # for humans: what the hardware must have


CAPABILITIES: dict[str, Capability] = {
    ONNXRUNTIME: Capability(
        ONNXRUNTIME,
        precisions=frozenset({"fp32", "int8", "fp16"}),
        cpu_precisions=frozenset({"fp32", "int8"}),
        devices=("cpu", "cuda"),
        hints=(F32,),
        needs="any CPU (x86-64, ARM64); fp16 variants only with the CUDA execution provider",
    ),
    OPENVINO: Capability(
        OPENVINO,
        precisions=frozenset({"fp32", "int8"}),
        cpu_precisions=frozenset({"fp32", "int8"}),
        devices=("CPU", "GPU", "NPU"),
        hints=HINTS,
        needs="x86-64 with SSE4.2 or ARM64; bf16 hint: AVX512_BF16 or AMX; f16 hint: AVX512_FP16/AMX-FP16 or "
        "ARM fp16 (as the device's OPTIMIZATION_CAPABILITIES reports)",
    ),
    TENSORRT: Capability(
        TENSORRT,
        precisions=frozenset({"tensorrt", "fp32", "fp16"}),
        cpu_precisions=frozenset(),
        devices=("cuda",),
        hints=(F32,),
        needs="an NVIDIA GPU with CUDA and the tensorrt + cuda-python packages",
    ),
}


def isa_unfit(runtime: str, hw: Hardware) -> str | None:
    """None when this CPU meets the runtime's instruction-set needs; otherwise why not (unknown flags: assume fit)."""
    flags = hw.cpu_features
    if runtime == OPENVINO and flags & X86_FLAGS and "sse4_2" not in flags:
        return "OpenVINO's CPU plugin needs SSE4.2, which this x86 CPU lacks"
    if runtime == TENSORRT and not hw.cuda and hw.tensorrt_version is None:
        return "TensorRT needs an NVIDIA GPU"
    return None


def runs_precision(runtime: str, precision: str, *, gpu: bool) -> bool:
    """Whether the runtime loads variants of this precision on a GPU (gpu=True) or a CPU."""
    cap = CAPABILITIES[runtime]
    return precision in (cap.precisions if gpu else cap.cpu_precisions)


def openvino_hints(optimization_capabilities: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Hints an OpenVINO device offers, f32 first, from its OPTIMIZATION_CAPABILITIES."""
    return (F32, *(h for h, need in OPENVINO_HINT_NEEDS.items() if need in optimization_capabilities))
