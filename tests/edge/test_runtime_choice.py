"""Runtime choice rules without any runtime: candidates, the hint gate, the pick, the cache key, forced choices."""

from __future__ import annotations

import numpy as np
import pytest

from edge.backends.base import Hardware
from edge.backends.chain import BackendChain
from edge.backends.factory import choice_settings
from edge.config import AutoBackendConfig, OnnxRuntimeConfig, OpenVINOConfig
from edge.runtime_choice import (
    Candidate,
    Offer,
    Outcome,
    agreement,
    cache_key,
    cached_pick,
    candidates,
    hardware_fingerprint,
    hint_rejection,
    pick,
    result_of,
    summary,
)
from shared.manifest import Target, Variant, VariantMetrics

CPU = Hardware(
    cpu_features=frozenset({"sse2", "sse4_2", "avx2", "avx512_vnni", "amx_bf16"}), extra={"machine": "x86_64"}
)


def _variant(precision: str) -> Variant:
    return Variant(
        file=f"model.{precision}.onnx",
        precision=precision,  # type: ignore[arg-type]
        sha256="a" * 64,
        bytes=100,
        target=Target(device="cpu"),
        metrics=VariantMetrics(accuracy=0.98, latency_ms_p50=1.0, latency_ms_p99=2.0),
    )


INT8, FP32 = _variant("int8"), _variant("fp32")
ORT = Offer("onnxruntime", "cpu", ("f32",), lambda v: v.precision in {"fp32", "int8"})
OV = Offer("openvino", "CPU", ("f32", "bf16", "f16"), lambda v: v.precision in {"fp32", "int8"})


def _ids(cs: list[Candidate]) -> list[str]:
    return [f"{c.backend}/{c.variant.precision}/{c.hint}" for c in cs]


def test_measuring_considers_every_runtime_variant_and_hint_in_preference_order() -> None:
    got = candidates([INT8, FP32], [ORT, OV], measure=True)
    assert _ids(got) == [
        "onnxruntime/int8/f32", "openvino/int8/f32", "openvino/int8/bf16", "openvino/int8/f16",
        "onnxruntime/fp32/f32", "openvino/fp32/f32", "openvino/fp32/bf16", "openvino/fp32/f16",
    ]


def test_without_measurement_a_reduced_hint_is_never_tried() -> None:
    assert _ids(candidates([INT8, FP32], [ORT, OV], measure=False)) == [
        "onnxruntime/int8/f32", "openvino/int8/f32", "onnxruntime/fp32/f32", "openvino/fp32/f32",
    ]


def test_a_runtime_that_cannot_run_a_variant_offers_nothing_for_it() -> None:
    fp32_only = Offer("openvino", "CPU", ("f32",), lambda v: v.precision == "fp32")
    assert _ids(candidates([INT8, FP32], [fp32_only], measure=True)) == ["openvino/fp32/f32"]


def test_forced_runtime_alone_is_offered_while_it_is_usable() -> None:
    from edge.backends.onnxruntime_backend import OnnxRuntimeBackend

    forced = choice_settings(OnnxRuntimeConfig(), benchmark_on_install=True)
    assert forced.measure and forced.forced_backend == "onnxruntime"
    chain = BackendChain([OnnxRuntimeBackend()], CPU, forced)
    assert [o.backend for o in chain.offers()] == ["onnxruntime"]
    # A forced runtime that is not in the chain (not installed here) leaves the fallback in charge.
    missing = BackendChain([OnnxRuntimeBackend()], CPU, choice_settings(OpenVINOConfig()))
    assert [o.backend for o in missing.offers()] == ["onnxruntime"]


def test_auto_measures_by_default_and_forced_configs_only_on_request() -> None:
    auto = choice_settings(AutoBackendConfig(hint_min_agreement=0.95, bench_runs=7))
    assert auto.measure and auto.hint_min_agreement == 0.95 and auto.runs == 7 and auto.forced_backend is None
    assert not choice_settings(AutoBackendConfig(measure=False)).measure
    assert not choice_settings(OpenVINOConfig()).measure
    assert choice_settings(OpenVINOConfig(), benchmark_on_install=True).measure


def test_hint_gate_rejects_disagreement_beyond_the_budget_and_never_f32() -> None:
    bf16 = Candidate("openvino", "CPU", FP32, "bf16")
    assert hint_rejection(bf16, 0.99, 0.99) is None
    why = hint_rejection(bf16, 0.9375, 0.99)
    assert why == "top-1 agrees with FP32 on 93.8% of the golden samples; the bf16 hint needs at least 99.0%"
    assert hint_rejection(Candidate("openvino", "CPU", FP32, "f32"), 0.0, 0.99) is None  # the smoke test gates f32


def test_agreement_counts_equal_top1() -> None:
    assert agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    with pytest.raises(ValueError, match="cannot be compared"):
        agreement(np.array([1, 2]), np.array([1, 2, 3]))


def test_pick_serves_the_fastest_that_passed_ties_to_the_preferred() -> None:
    a = Outcome(Candidate("onnxruntime", "cpu", INT8, "f32"), p50_ms=2.0)
    b = Outcome(Candidate("openvino", "CPU", INT8, "f32"), p50_ms=1.0)
    c = Outcome(Candidate("openvino", "CPU", FP32, "bf16"), p50_ms=0.5, rejected="disagrees")
    d = Outcome(Candidate("openvino", "CPU", FP32, "f32"), p50_ms=1.0)
    assert pick([a, b, c, d]) is b
    assert pick([c]) is None
    unmeasured = [Outcome(a.candidate, rejected="no"), Outcome(b.candidate), Outcome(d.candidate)]
    assert pick(unmeasured) is unmeasured[1]


def test_cache_key_changes_with_package_hardware_runtime_versions_and_settings() -> None:
    base = cache_key("p" * 64, "hw1", {"onnxruntime": "1.20", "openvino": "2026.4"}, {"agree": 0.99})
    assert base == cache_key("p" * 64, "hw1", {"openvino": "2026.4", "onnxruntime": "1.20"}, {"agree": 0.99})
    others = {
        cache_key("q" * 64, "hw1", {"onnxruntime": "1.20", "openvino": "2026.4"}, {"agree": 0.99}),
        cache_key("p" * 64, "hw2", {"onnxruntime": "1.20", "openvino": "2026.4"}, {"agree": 0.99}),
        cache_key("p" * 64, "hw1", {"onnxruntime": "1.21", "openvino": "2026.4"}, {"agree": 0.99}),
        cache_key("p" * 64, "hw1", {"onnxruntime": "1.20", "openvino": "2026.4"}, {"agree": 0.9}),
    }
    assert base not in others and len(others) == 4


def test_hardware_fingerprint_follows_kernel_relevant_facts_only() -> None:
    fp = hardware_fingerprint(CPU, "Intel Xeon")
    noisy = Hardware(cpu_features=CPU.cpu_features | {"ht", "rdrand"}, extra={"machine": "x86_64", "x": "y"})
    assert hardware_fingerprint(noisy, "Intel Xeon") == fp
    assert hardware_fingerprint(CPU, "AMD EPYC") != fp
    no_amx = Hardware(cpu_features=CPU.cpu_features - {"amx_bf16"}, extra={"machine": "x86_64"})
    assert hardware_fingerprint(no_amx, "Intel Xeon") != fp



def test_result_records_every_candidate_its_status_p50_and_reason() -> None:
    fast = Outcome(Candidate("openvino", "CPU", INT8, "f32"), p50_ms=1.0, p99_ms=1.5, agreement=1.0)
    slow = Outcome(Candidate("onnxruntime", "cpu", INT8, "f32"), p50_ms=2.0, p99_ms=2.5, agreement=1.0)
    bad = Outcome(Candidate("openvino", "CPU", FP32, "f16"), agreement=0.5, rejected="top-1 agrees ...")
    result = result_of([slow, fast, bad], fast, model="digits", version=3, package_sha256="p" * 64,
                       hardware="hw", runtimes={"openvino": "2026.4"}, key="k", measured=True, now_ms=1)
    assert [c.status for c in result.candidates] == ["passed", "chosen", "rejected"]
    assert result.chosen is not None and result.chosen.backend == "openvino" and result.chosen.p50_ms == 1.0
    assert result.candidates[2].reason == "top-1 agrees ..." and result.candidates[2].inference_precision == "f16"
    line = summary(result)
    assert line.startswith("runtime choice for digits v3 (measured): serving openvino int8 (f32)")
    assert "*openvino/int8/f32 1.000 ms" in line and "onnxruntime/int8/f32 2.000 ms" in line
    assert "openvino/fp32/f16 rejected" in line


def test_cached_winner_is_reused_only_while_it_is_still_offered() -> None:
    win = Outcome(Candidate("openvino", "CPU", INT8, "bf16"), p50_ms=1.0)
    result = result_of([win], win, model="digits", version=3, package_sha256="p" * 64, hardware="hw",
                       runtimes={}, key="k", measured=True, now_ms=1)
    today = candidates([INT8, FP32], [ORT, OV], measure=True)
    hit = cached_pick(result, today)
    assert hit is not None and hit.id == "openvino:CPU:model.int8.onnx:bf16"
    assert cached_pick(result, candidates([INT8, FP32], [ORT], measure=True)) is None
