"""Variant choice by hardware, forcing and accuracy floor (pure: hand-built manifests, no files)."""

from __future__ import annotations

import pytest

from edge.backends.base import Hardware
from edge.errors import PackageRejected
from edge.variant_select import choose_variant, int8_saturation_risk, rank_variants
from shared.manifest import Golden, Manifest, Quantization, Target, Variant, VariantMetrics
from tests.edge.package_factory import make_manifest

H100 = Hardware(
    cpu_features=frozenset({"sse2", "avx2", "avx512_vnni"}),
    cuda=True,
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    tensorrt_version="10.3.0",
)
CPU_VNNI = Hardware(cpu_features=frozenset({"sse2", "avx2", "avx512_vnni"}))
CPU_NO_VNNI = Hardware(cpu_features=frozenset({"sse2", "avx2"}))
ARM = Hardware(cpu_features=frozenset({"asimd", "fp"}))


def _variant(
    precision: str,
    accuracy: float = 0.98,
    *,
    file: str | None = None,
    target: Target | None = None,
    latency: float = 1.0,
    quantization: Quantization | None = None,
) -> Variant:
    return Variant(
        file=file or f"model.{precision}.{'engine' if precision == 'tensorrt' else 'onnx'}",
        precision=precision,  # type: ignore[arg-type]
        sha256="a" * 64,
        bytes=100,
        target=target or Target(device="cuda" if precision == "fp16" else "cpu"),
        metrics=VariantMetrics(accuracy=accuracy, latency_ms_p50=latency, latency_ms_p99=latency * 2),
        quantization=quantization,
    )


def _engine(gpu: str = "NVIDIA H100 80GB HBM3", cc: str = "9.0", trt: str = "10.3.0.26", acc: float = 0.98) -> Variant:
    return _variant(
        "tensorrt",
        acc,
        file=f"model.{cc.replace('.', '')}.engine",
        target=Target(device="tensorrt", gpu_name=gpu, compute_capability=cc, tensorrt_version=trt),
    )


def _q(reduce_range: bool) -> Quantization:
    return Quantization(
        format="QDQ",
        activation_type="uint8",
        weight_type="int8",
        per_channel=True,
        reduce_range=reduce_range,
        calibration_method="MinMax",
        calibration_samples=100,
        reason="test",
    )


def _manifest(*variants: Variant) -> Manifest:
    golden = Golden(file="golden.npz", sha256="b" * 64, bytes=10, count=4)
    return make_manifest("digits", 3, list(variants), golden)


FULL = _manifest(
    _variant("fp32", 0.980),
    _variant("fp16", 0.980),
    _variant("int8", 0.975, quantization=_q(reduce_range=True)),
    _engine(),
)


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        (H100, "tensorrt"),
        (Hardware(cuda=True, cpu_features=CPU_VNNI.cpu_features), "fp16"),
        (CPU_VNNI, "int8"),
        (ARM, "int8"),
        (Hardware(), "int8"),
    ],
)
def test_preference_follows_hardware(hw: Hardware, expected: str) -> None:
    assert choose_variant(FULL, hw).precision == expected


def test_fp32_when_it_is_the_only_cpu_variant() -> None:
    m = _manifest(_variant("fp32"), _variant("fp16"))
    assert choose_variant(m, CPU_VNNI).precision == "fp32"


@pytest.mark.parametrize(
    ("engine", "why"),
    [
        (_engine(gpu="Orin"), "GPU"),
        (_engine(cc="8.0"), "compute capability"),
        (_engine(trt="8.6.1"), "TensorRT 8.6.1"),
    ],
)
def test_engine_for_another_target_is_skipped_with_a_note(engine: Variant, why: str) -> None:
    sel = rank_variants(_manifest(_variant("fp32"), _variant("fp16"), engine), H100)
    assert sel.best.precision == "fp16"
    assert any(why in n for n in sel.notes)
    assert any("no prebuilt engine matches" in n for n in sel.notes)


def test_engine_matches_across_patch_build_numbers() -> None:
    hw = Hardware(cuda=True, gpu_name="nvidia h100 80gb hbm3", compute_capability="9.0", tensorrt_version="10.3.0")
    assert choose_variant(_manifest(_variant("fp32"), _engine(trt="10.3.0.26")), hw).precision == "tensorrt"


def test_engine_needs_tensorrt_installed() -> None:
    hw = Hardware(cuda=True, gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")
    assert choose_variant(_manifest(_variant("fp32"), _engine()), hw).precision == "fp32"


def test_accuracy_floor_excludes_a_lossy_variant() -> None:
    m = _manifest(_variant("fp32", 0.98), _variant("int8", 0.95))
    sel = rank_variants(m, CPU_VNNI, max_accuracy_drop=0.01)
    assert sel.best.precision == "fp32"
    assert any("int8" in n and "below the best" in n for n in sel.notes)
    assert choose_variant(m, CPU_VNNI, max_accuracy_drop=0.05).precision == "int8"


def test_drop_exactly_at_the_limit_is_allowed() -> None:
    m = _manifest(_variant("fp32", 0.98), _variant("int8", 0.97))
    assert choose_variant(m, CPU_VNNI, max_accuracy_drop=0.01).precision == "int8"


def test_forced_variant_wins_over_preference() -> None:
    assert choose_variant(FULL, H100, forced="fp32").precision == "fp32"
    assert choose_variant(FULL, H100, forced="cuda-fp16").precision == "fp16"
    assert choose_variant(FULL, H100, forced="int8").precision == "int8"


def test_forced_variant_missing_from_package_is_a_clear_error() -> None:
    with pytest.raises(PackageRejected, match=r"forced int8.*fp32 \(model.fp32.onnx\): not the forced variant"):
        choose_variant(_manifest(_variant("fp32")), CPU_VNNI, forced="int8")


def test_forced_variant_that_cannot_run_here_is_a_clear_error() -> None:
    with pytest.raises(PackageRejected, match="FP16 needs the CUDA execution provider"):
        choose_variant(FULL, CPU_VNNI, forced="fp16")


def test_forced_variant_still_obeys_the_accuracy_floor() -> None:
    m = _manifest(_variant("fp32", 0.98), _variant("int8", 0.90))
    with pytest.raises(PackageRejected, match="below the best"):
        choose_variant(m, CPU_VNNI, forced="int8")


def test_nothing_fits_names_every_reason() -> None:
    m = _manifest(_variant("fp16"), _engine(gpu="Orin"))
    with pytest.raises(PackageRejected) as err:
        choose_variant(m, CPU_VNNI)
    assert "FP16 needs the CUDA" in str(err.value) and "TensorRT is not installed" in str(err.value)


def test_full_range_u8s8_is_avoided_on_x86_without_vnni() -> None:
    m = _manifest(_variant("fp32", 0.98), _variant("int8", 0.98, quantization=_q(reduce_range=False)))
    sel = rank_variants(m, CPU_NO_VNNI)
    assert sel.best.precision == "fp32"
    assert any("saturate" in n for n in sel.notes)
    # Safe where VNNI exists, on ARM, and when forced by the operator.
    assert choose_variant(m, CPU_VNNI).precision == "int8"
    assert choose_variant(m, ARM).precision == "int8"
    assert choose_variant(m, CPU_NO_VNNI, forced="int8").precision == "int8"


def test_reduce_range_int8_is_fine_without_vnni() -> None:
    v = _variant("int8", quantization=_q(reduce_range=True))
    assert not int8_saturation_risk(v, CPU_NO_VNNI)
    assert choose_variant(_manifest(_variant("fp32"), v), CPU_NO_VNNI).precision == "int8"


def test_within_a_precision_higher_accuracy_then_lower_latency_wins() -> None:
    m = _manifest(
        _variant("fp32", 0.98, file="a.onnx", latency=2.0),
        _variant("fp32", 0.98, file="b.onnx", latency=1.0),
        _variant("fp32", 0.97, file="c.onnx", latency=0.5),
    )
    assert [v.file for v in rank_variants(m, CPU_VNNI).ranked] == ["b.onnx", "a.onnx", "c.onnx"]


def test_a_detectors_variants_are_held_to_their_map_drop() -> None:
    def det(precision: str, map50_95: float) -> dict[str, object]:
        metrics = VariantMetrics(map50=0.9, map50_95=map50_95, latency_ms_p50=1.0, latency_ms_p99=2.0)
        return _variant(precision).model_copy(update={"metrics": metrics}).model_dump()

    base = _manifest(_variant("fp32")).model_dump()
    detector = Manifest.model_validate({
        **base, "task": "detection", "head": {"format": "yolo"}, "variants": [det("fp32", 0.70), det("int8", 0.60)],
        "outputs": [{"name": "output0", "shape": [1, 4 + len(base["labels"]), 8400], "dtype": "float32",
                     "layout": "NCA"}],
    })
    selection = rank_variants(detector, CPU_VNNI, max_accuracy_drop=0.015)
    assert [v.precision for v in selection.ranked] == ["fp32"]
    assert any("mAP@.5:.95 0.6000 is more than 0.0150 below" in n for n in selection.notes)
