"""Training precision: bf16 autocast only where the CPU has native bf16, never assumed."""

from __future__ import annotations

from cloud.cpu_features import CpuInfo
from cloud.detection.precision import training_precision

WITH_BF16 = CpuInfo("x86_64", frozenset({"avx2", "avx512f", "avx512_bf16"}))
WITHOUT = CpuInfo("x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"}))


def test_auto_uses_bf16_on_a_cpu_that_has_it_and_the_fallback_elsewhere() -> None:
    assert training_precision("auto", True, "32-true", WITH_BF16) == "bf16-mixed"
    assert training_precision("auto", True, "32-true", WITHOUT) == "32-true"
    assert training_precision("auto", True, "32-true", CpuInfo("aarch64", frozenset({"asimd", "bf16"}))) == "bf16-mixed"


def test_a_gpu_run_or_an_explicit_choice_is_left_alone() -> None:
    assert training_precision("auto", False, "16-mixed", WITH_BF16) == "16-mixed"
    assert training_precision("32-true", True, "32-true", WITH_BF16) == "32-true"
    assert training_precision("bf16-mixed", True, "32-true", WITHOUT) == "bf16-mixed"
