"""Which Lightning precision trains the detector: bf16 autocast where the CPU does bf16 natively, else FP32."""

from __future__ import annotations

from cloud.cpu_features import CpuInfo

# x86 flags with native bf16 dot products (AVX512-BF16, AMX); ARM's 'bf16' feature is the same on Arm v8.6+.
NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def training_precision(choice: str, on_cpu: bool, fallback: str, cpu: CpuInfo) -> str:
    """`auto` picks bf16-mixed on a CPU run where the CPU has native bf16 (about 2x the FP32 steps/s), else fallback."""
    if choice != "auto":
        return choice
    if on_cpu and cpu.flags & NATIVE_BF16:
        return "bf16-mixed"
    return fallback
