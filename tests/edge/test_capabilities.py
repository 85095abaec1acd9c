"""Which inference hints and variants a device is offered, on simulated CPUs of a mixed fleet (AVX2 only, AVX-512
without VNNI/BF16/FP16, AVX-512 with VNNI and BF16, Sapphire Rapids with AMX and FP16, a Raspberry Pi, a Jetson
Orin): pure logic on injected CPU flags and runtime reports, never this machine's CPU."""

from __future__ import annotations

import pytest

from edge.backends.base import Hardware
from edge.backends.capabilities import (
    CAPABILITIES,
    F32,
    OPENVINO,
    hint_unfit,
    isa_unfit,
    openvino_hints,
    runs_precision,
)
from edge.backends.chain import BackendChain
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.openvino_backend import OpenVINOBackend
from edge.config import OnnxRuntimeConfig, OpenVINOConfig
from edge.variant_select import int8_saturation_risk, rank_variants
from shared.manifest import Golden, Quantization, Target, Variant, VariantMetrics
from tests.edge.package_factory import make_manifest

# /proc/cpuinfo flag sets as they are (often partial in configs: AVX2_BARE lists no sse2).
AVX2 = frozenset({"sse2", "sse4_2", "avx", "avx2", "fma"})
AVX2_BARE = frozenset({"avx2", "fma"})
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl", "avx512cd"}
AVX512_VNNI_BF16 = AVX512 | {"avx512_vnni", "avx512_bf16"}  # Cooper Lake, Zen 4
SAPPHIRE = AVX512_VNNI_BF16 | {"amx_tile", "amx_bf16", "amx_int8", "avx512_fp16"}
PI4 = frozenset({"fp", "asimd", "evtstrm", "crc32", "cpuid"})  # Cortex-A72, ARMv8.0
ORIN = frozenset({"fp", "asimd", "fphp", "asimdhp", "asimddp", "crc32", "atomics"})  # Cortex-A78AE, ARMv8.2
SSE2_ONLY = frozenset({"sse2"})

# What OpenVINO's CPU plugin may report; a version that reports more than the CPU does must not fool the choice.
EVERYTHING = frozenset({"FP32", "BF16", "FP16", "INT8", "BIN", "EXPORT_IMPORT"})

CPUS = {
    "avx2": (AVX2, (F32,)),
    "avx2-partial-flags": (AVX2_BARE, (F32,)),
    "avx512-no-vnni-bf16-fp16": (AVX512, (F32,)),
    "avx512-vnni-bf16": (AVX512_VNNI_BF16, (F32, "bf16")),
    "sapphire-rapids": (SAPPHIRE, (F32, "bf16", "f16")),
    "raspberry-pi-4": (PI4, (F32,)),
    "jetson-orin": (ORIN, (F32, "f16")),
    "unknown-flags": (frozenset(), (F32, "bf16", "f16")),  # nothing known: trust the runtime's own report
}


@pytest.mark.parametrize("name", list(CPUS))
def test_openvino_offers_a_reduced_hint_only_where_the_cpu_computes_it(name: str) -> None:
    flags, expected = CPUS[name]
    assert openvino_hints(EVERYTHING, flags) == expected
    assert openvino_hints({"FP32", "INT8"}, flags) == (F32,)  # never more than the runtime reports


@pytest.mark.parametrize("name", ["avx2", "avx512-no-vnni-bf16-fp16", "raspberry-pi-4"])
def test_a_refused_hint_says_what_the_cpu_lacks(name: str) -> None:
    flags, _ = CPUS[name]
    why = hint_unfit("bf16", flags)
    assert why is not None and "bf16" in why
    f16 = hint_unfit("f16", flags)
    assert f16 is not None and ("avx512_fp16" in f16 or "fphp" in f16)
    assert hint_unfit(F32, flags) is None


class _ReportingOpenVINO(OpenVINOBackend):
    """OpenVINO as a runtime that reports every capability, on whatever CPU the test simulates."""

    def hints(self) -> tuple[str, ...]:
        return openvino_hints(EVERYTHING)


@pytest.mark.parametrize("name", list(CPUS))
def test_the_chain_offers_the_runtime_choice_only_hints_this_cpu_has(name: str) -> None:
    flags, expected = CPUS[name]
    hw = Hardware(cpu_features=flags)
    chain = BackendChain([_ReportingOpenVINO(OpenVINOConfig()), OnnxRuntimeBackend(OnnxRuntimeConfig(threads=1))], hw)
    offers = {o.backend: o.hints for o in chain.offers()}
    assert offers == {"openvino": expected, "onnxruntime": (F32,)}


def test_a_forced_hint_is_kept_whatever_the_cpu() -> None:
    chain = BackendChain([_ReportingOpenVINO(OpenVINOConfig(inference_precision="bf16"))], Hardware(cpu_features=AVX2))
    assert [o.hints for o in chain.offers()] == [("bf16",)]


@pytest.mark.parametrize("flags", [AVX2, AVX2_BARE, AVX512, AVX512_VNNI_BF16, SAPPHIRE, PI4, ORIN])
def test_cpu_runtimes_run_fp32_and_int8_everywhere_and_fp16_files_nowhere(flags: frozenset[str]) -> None:
    for runtime in ("onnxruntime", OPENVINO):
        assert runs_precision(runtime, "fp32", gpu=False) and runs_precision(runtime, "int8", gpu=False)
        assert not runs_precision(runtime, "fp16", gpu=False)
    assert isa_unfit(OPENVINO, Hardware(cpu_features=flags)) is None
    assert CAPABILITIES[OPENVINO].cpu_precisions == frozenset({"fp32", "int8"})


def test_openvino_needs_sse42_on_x86_only() -> None:
    assert isa_unfit(OPENVINO, Hardware(cpu_features=SSE2_ONLY)) is not None
    assert isa_unfit(OPENVINO, Hardware(cpu_features=PI4)) is None


def _int8(reduce_range: bool) -> Variant:
    q = Quantization(format="QDQ", activation_type="uint8", weight_type="int8", per_channel=True,
                     reduce_range=reduce_range, calibration_method="MinMax", calibration_samples=100, reason="test")
    return Variant(file=f"model.int8{'.rr' if reduce_range else ''}.onnx", precision="int8", sha256="a" * 64,
                   bytes=100, target=Target(device="cpu"), quantization=q,
                   metrics=VariantMetrics(accuracy=0.98, latency_ms_p50=1.0, latency_ms_p99=2.0))


FP32 = Variant(file="model.fp32.onnx", precision="fp32", sha256="c" * 64, bytes=100, target=Target(device="cpu"),
               metrics=VariantMetrics(accuracy=0.98, latency_ms_p50=2.0, latency_ms_p99=4.0))
GOLDEN = Golden(file="golden.npz", sha256="b" * 64, bytes=10, count=4)

# ORT's U8S8 kernels on x86 without VNNI multiply with VPMADDUBSW into int16, which saturates at full weight range.
INT8_FULL_RANGE_SAFE = {
    "avx2": False, "avx2-partial-flags": False, "avx512-no-vnni-bf16-fp16": False, "avx512-vnni-bf16": True,
    "sapphire-rapids": True, "raspberry-pi-4": True, "jetson-orin": True,
}


@pytest.mark.parametrize("name", list(INT8_FULL_RANGE_SAFE))
def test_full_range_u8s8_serves_only_where_it_cannot_saturate_and_reduce_range_everywhere(name: str) -> None:
    hw = Hardware(cpu_features=CPUS[name][0])
    safe = INT8_FULL_RANGE_SAFE[name]
    assert int8_saturation_risk(_int8(reduce_range=False), hw) is not safe
    assert not int8_saturation_risk(_int8(reduce_range=True), hw)
    full = rank_variants(make_manifest("digits", 3, [_int8(False), FP32], GOLDEN), hw)
    assert full.best.precision == ("int8" if safe else "fp32")
    if not safe:
        assert any("reduce_range" in note and "VNNI" in note for note in full.notes), full.notes
    reduced = rank_variants(make_manifest("digits", 3, [_int8(True), FP32], GOLDEN), hw)
    assert reduced.best.file == "model.int8.rr.onnx"
