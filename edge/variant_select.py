"""Which variant of a package this device should serve: a pure function of the manifest and the hardware."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from edge.backends.base import Hardware
from edge.backends.capabilities import X86_FLAGS
from edge.errors import PackageRejected
from shared.manifest import Manifest, Precision, Variant

Forced = Literal["auto", "tensorrt", "cuda-fp16", "int8", "fp32", "fp16"]

# Best first: a matching prebuilt engine, then CUDA FP16, then CPU INT8, then CPU FP32.
PREFERENCE: tuple[Precision, ...] = ("tensorrt", "fp16", "int8", "fp32")
FORCED_PRECISION: dict[str, Precision] = {
    "tensorrt": "tensorrt",
    "cuda-fp16": "fp16",
    "fp16": "fp16",
    "int8": "int8",
    "fp32": "fp32",
}
# Any of these lets x86 run U8S8 int8 without the VPMADDUBSW int16 saturation.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
# Recorded accuracies are rounded floats; a drop equal to the limit is allowed.
_ACCURACY_SLACK = 1e-9


@dataclass(frozen=True)
class Selection:
    """Variants this device may serve, best first, and why the others were passed over."""

    ranked: tuple[Variant, ...]
    notes: tuple[str, ...]

    @property
    def best(self) -> Variant:
        """The variant to serve."""
        return self.ranked[0]


def _release(version: str | None) -> tuple[int, ...]:
    """Major.minor.patch of a TensorRT version string ('10.3.0.26' and '10.3.0' name the same release)."""
    return tuple(int(p) for p in re.findall(r"\d+", version or "")[:3])


def engine_matches(variant: Variant, hw: Hardware) -> str | None:
    """None when a prebuilt TensorRT engine runs on this device; otherwise why not."""
    t = variant.target
    if hw.tensorrt_version is None:
        return "TensorRT is not installed"
    if not hw.gpu_name or (t.gpu_name or "").strip().casefold() != hw.gpu_name.strip().casefold():
        return f"engine built for GPU {t.gpu_name!r}, this device has {hw.gpu_name!r}"
    if t.compute_capability != hw.compute_capability:
        return f"engine built for compute capability {t.compute_capability}, device has {hw.compute_capability}"
    if not t.tensorrt_version or _release(t.tensorrt_version) != _release(hw.tensorrt_version):
        return f"engine built with TensorRT {t.tensorrt_version}, device has {hw.tensorrt_version}"
    return None


def int8_saturation_risk(variant: Variant, hw: Hardware) -> bool:
    """U8S8 weights at full range on an x86 CPU without VNNI can saturate int16 accumulators (wrong outputs)."""
    q = variant.quantization
    if q is None or q.reduce_range or not (q.activation_type == "uint8" and q.weight_type == "int8"):
        return False
    x86 = bool(hw.cpu_features & X86_FLAGS)  # flag sets are often partial: an AVX2 list may not name sse2
    return x86 and not (hw.cpu_features & VNNI_FLAGS)


def hardware_fit(variant: Variant, hw: Hardware) -> str | None:
    """None when this device can run the variant; otherwise why not."""
    if variant.precision == "tensorrt":
        return engine_matches(variant, hw)
    if variant.precision == "fp16" and not hw.cuda:
        return "FP16 needs the CUDA execution provider, which is not available"
    return None


def rank_variants(
    manifest: Manifest, hw: Hardware, forced: Forced = "auto", max_accuracy_drop: float = 0.01
) -> Selection:
    """Variants that fit this device and are accurate enough, best first; PackageRejected when none is."""
    # The task's gate figure: top-1 accuracy for classifiers, mAP@.5:.95 for detectors.
    best_accuracy = max(v.metrics.quality for v in manifest.variants)
    floor = best_accuracy - max_accuracy_drop - _ACCURACY_SLACK
    wanted = PREFERENCE if forced == "auto" else (FORCED_PRECISION[forced],)
    notes: list[str] = []
    fitting: list[Variant] = []
    for v in manifest.variants:
        label = f"{v.precision} ({v.file})"
        if v.precision not in wanted:
            if forced != "auto":
                notes.append(f"{label}: not the forced variant {forced}")
            continue
        if v.metrics.quality < floor:
            figure = "accuracy" if manifest.task == "classification" else "mAP@.5:.95"
            notes.append(
                f"{label}: {figure} {v.metrics.quality:.4f} is more than {max_accuracy_drop:.4f} "
                f"below the best variant's {best_accuracy:.4f}"
            )
            continue
        why = hardware_fit(v, hw)
        if why is None and forced == "auto" and v.precision == "int8" and int8_saturation_risk(v, hw):
            why = "U8S8 without reduce_range may saturate on this x86 CPU without VNNI (force 'int8' to use it)"
        if why is not None:
            notes.append(f"{label}: {why}")
            continue
        fitting.append(v)
    if hw.tensorrt_version and not any(v.precision == "tensorrt" for v in fitting) and "tensorrt" in wanted:
        notes.append(
            f"TensorRT {hw.tensorrt_version} is present but no prebuilt engine matches {hw.gpu_name} "
            f"(cc {hw.compute_capability}); serving ONNX, an engine can be built on the device"
        )
    if not fitting:
        raise PackageRejected(
            f"no variant of {manifest.name} v{manifest.version} fits this device"
            + (f" (forced {forced})" if forced != "auto" else "")
            + ": "
            + "; ".join(notes or ["the package has no variants"])
        )
    fitting.sort(key=lambda v: (wanted.index(v.precision), -v.metrics.quality, v.metrics.latency_ms_p50))
    return Selection(tuple(fitting), tuple(notes))


def choose_variant(
    manifest: Manifest, hw: Hardware, forced: Forced = "auto", max_accuracy_drop: float = 0.01
) -> Variant:
    """The single variant to serve on this hardware (see rank_variants for the rules)."""
    return rank_variants(manifest, hw, forced, max_accuracy_drop).best
