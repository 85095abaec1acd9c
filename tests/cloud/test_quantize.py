"""INT8: the settings chosen for each CPU, and a real QDQ quantization of a small trained net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from cloud.cpu_features import CpuInfo
from cloud.errors import ExportError
from cloud.export_onnx import export_fp32
from cloud.quantize import calibration_subset, choose_int8_plan, count_qdq, head_nodes, quantize_int8
from tests.fixtures.tiny_classifier import SHAPE, trained_tiny

NO_VNNI = CpuInfo("x86_64", frozenset({"sse2", "avx2", "fma"}))
VNNI = CpuInfo("x86_64", frozenset({"sse2", "avx2", "avx512f", "avx512_vnni"}))
ARM = CpuInfo("aarch64", frozenset({"asimd", "asimddp"}))
UNKNOWN = CpuInfo("", frozenset())


def test_auto_uses_7bit_weights_on_every_build_cpu() -> None:
    for cpu in (NO_VNNI, VNNI, ARM, UNKNOWN):
        plan = choose_int8_plan("auto", cpu)
        assert (plan.activation_type, plan.weight_type, plan.reduce_range) == ("uint8", "int8", True)
        assert "int8_mode=u8s8" in plan.reason  # says how to opt out
    assert "(this build CPU has VNNI, but the devices may not)" in choose_int8_plan("auto", VNNI).reason


@pytest.mark.parametrize(
    ("mode", "types"),
    [("u8s8", ("uint8", "int8", False)), ("u8s8_reduce_range", ("uint8", "int8", True)),
     ("u8u8", ("uint8", "uint8", False))],
)
def test_explicit_modes_are_obeyed_on_any_cpu(mode: str, types: tuple[str, str, bool]) -> None:
    for cpu in (NO_VNNI, VNNI, ARM):
        plan = choose_int8_plan(mode, cpu)  # type: ignore[arg-type]
        assert (plan.activation_type, plan.weight_type, plan.reduce_range) == types
        assert f"int8_mode={mode}" in plan.reason


def test_forced_u8s8_on_a_cpu_without_vnni_warns_in_the_reason() -> None:
    assert "may saturate" in choose_int8_plan("u8s8", NO_VNNI).reason
    assert "may saturate" not in choose_int8_plan("u8s8", VNNI).reason


def test_calibration_subset_is_bounded_and_reproducible() -> None:
    data = np.arange(100, dtype=np.float32).reshape(100, 1)
    a, b = calibration_subset(data, 10), calibration_subset(data, 10)
    assert a.shape == (10, 1) and np.array_equal(a, b)
    assert len(np.unique(a)) == 10
    assert calibration_subset(data, 500).shape == (100, 1)


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("q") / "model.fp32.onnx"
    export_fp32(trained_tiny().model, SHAPE, path)
    return path


def test_quantize_writes_qdq_model_and_records_the_settings(fp32_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    plan = choose_int8_plan("auto", NO_VNNI)
    q = quantize_int8(fp32_model, out, trained_tiny().calib_inputs, plan, samples=64)
    model = onnx.load(str(out))
    assert count_qdq(model) > 0
    assert q.format == "QDQ" and q.per_channel
    assert (q.activation_type, q.weight_type, q.reduce_range) == ("uint8", "int8", True)
    assert q.calibration_method == "MinMax" and q.calibration_samples == 64
    assert q.reason == plan.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.int8.onnx"]  # no scratch files left


def test_float_head_keeps_the_classifier_unquantized(fp32_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    q = quantize_int8(fp32_model, out, trained_tiny().calib_inputs, choose_int8_plan("u8s8", VNNI), samples=32,
                      float_head=True)
    model = onnx.load(str(out))
    heads = head_nodes(model)
    assert len(heads) == 1
    assert "classifier kept in float" in q.reason
    head = next(n for n in model.graph.node if n.name == heads[0])
    assert head.op_type == "Gemm"
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert producers.get(head.input[1]) != "DequantizeLinear"  # float weights straight from an initializer
    assert any(n.op_type == "Conv" for n in model.graph.node)
    assert count_qdq(model) > 0


def test_no_calibration_images_is_an_error_and_leaves_nothing(fp32_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    with pytest.raises(ExportError, match="calibration"):
        quantize_int8(fp32_model, out, np.zeros((0, *SHAPE), np.float32), choose_int8_plan("auto", VNNI), samples=8)
    assert list(tmp_path.iterdir()) == []


def test_calibration_images_of_the_wrong_shape_fail_cleanly(fp32_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.int8.onnx"
    with pytest.raises(ExportError, match="INT8 quantization failed"):
        quantize_int8(fp32_model, out, np.zeros((4, 3, 8, 8), np.float32), choose_int8_plan("auto", VNNI), samples=8)
    assert list(tmp_path.iterdir()) == []
