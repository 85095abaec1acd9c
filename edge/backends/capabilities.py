"""What each runtime can run (variant precisions, devices, inference hints, ISA needs), declared in one table."""

from __future__ import annotations

from dataclasses import dataclass

from edge.backends.base import Hardware

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
TENSORRT = "tensorrt"
RUNTIMES = (TENSORRT, OPENVINO, ONNXRUNTIME)

# Any of these says the CPU is x86 (flag sets in configs and tests are often partial).
X86_FLAGS = frozenset({"sse2", "sse4_2", "avx", "avx2", "fma", "avx512f"})
# Any of these says an x86 CPU has SSE4.2 (every AVX CPU does, even where a partial flag list omits it).
_HAS_SSE42 = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f"})
# Any of these says the CPU is ARM (/proc/cpuinfo "Features").
ARM_FLAGS = frozenset({"asimd", "neon", "fphp", "asimdhp", "asimddp"})
# Inference precision hints; "f32" is every runtime's native precision (what the variant file says).
F32 = "f32"
HINTS = (F32, "bf16", "f16")
# OpenVINO reports per device what it can compute in OPTIMIZATION_CAPABILITIES; a hint needs its entry.
OPENVINO_HINT_NEEDS = {"bf16": "BF16", "f16": "FP16"}
# What a CPU must have to compute a reduced precision natively, on x86 and on ARM. A runtime may report more (some
# OpenVINO versions list BF16 on any AVX-512 CPU and emulate it): a hint is offered only where both agree.
HINT_CPU_FLAGS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "bf16": (frozenset({"avx512_bf16", "amx_bf16"}), frozenset({"bf16"})),
    "f16": (frozenset({"avx512_fp16", "amx_fp16"}), frozenset({"fphp", "asimdhp"})),
}


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
    if runtime == OPENVINO and flags & X86_FLAGS and not flags & _HAS_SSE42:
        return "OpenVINO's CPU plugin needs SSE4.2, which this x86 CPU lacks"
    if runtime == TENSORRT and not hw.cuda and hw.tensorrt_version is None:
        return "TensorRT needs an NVIDIA GPU"
    return None


def runs_precision(runtime: str, precision: str, *, gpu: bool) -> bool:
    """Whether the runtime loads variants of this precision on a GPU (gpu=True) or a CPU."""
    cap = CAPABILITIES[runtime]
    return precision in (cap.precisions if gpu else cap.cpu_precisions)


def hint_unfit(hint: str, cpu_flags: frozenset[str]) -> str | None:
    """None when this CPU computes the inference hint natively (or its flags are unknown); otherwise why not."""
    if hint == F32 or hint not in HINT_CPU_FLAGS:
        return None
    x86_needs, arm_needs = HINT_CPU_FLAGS[hint]
    if cpu_flags & X86_FLAGS:
        needs, isa = x86_needs, "x86"
    elif cpu_flags & ARM_FLAGS:
        needs, isa = arm_needs, "ARM"
    else:
        return None  # nothing known about this CPU: the runtime's own report decides
    if cpu_flags & needs:
        return None
    return f"the {hint} hint needs {' or '.join(sorted(needs))}, which this {isa} CPU lacks"


def openvino_hints(
    optimization_capabilities: set[str] | frozenset[str], cpu_flags: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Hints an OpenVINO CPU device offers, f32 first: those its OPTIMIZATION_CAPABILITIES report and, given its
    flags, the CPU computes natively (hint_unfit)."""
    return (F32, *(h for h, need in OPENVINO_HINT_NEEDS.items()
                   if need in optimization_capabilities and hint_unfit(h, cpu_flags) is None))
