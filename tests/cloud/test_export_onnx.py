"""FP32 export (names, opset, dynamic batch, exporter fallback) and FP16 conversion of a small trained net."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cloud import export_onnx
from cloud.config import ExportConfig
from cloud.errors import ExportError
from cloud.export_onnx import convert_fp16, export_fp32, tensor_specs
from cloud.export_pipeline import export_and_verify, torch_logits
from cloud.verify import fp16_gate, fp32_gate
from shared.manifest import TensorSpec
from tests.fixtures.tiny_classifier import LABELS, SHAPE, TinyNet, trained_tiny


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"input": x})[0])


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.fp32.onnx"
    exported = export_fp32(trained_tiny().model, SHAPE, path, opset=17)
    assert exported.exporter == "torchscript" and exported.opset == 17
    return path


def test_fp32_matches_torch_at_batch_1_and_5(fp32_path: Path) -> None:
    t = trained_tiny()
    for n in (1, 5):
        x = t.test_inputs[:n]
        got = _run(fp32_path, x)
        assert got.shape == (n, len(LABELS))
        np.testing.assert_allclose(got, torch_logits(t.model, x), atol=1e-4)


def test_fp32_passes_its_gate_on_the_test_split(fp32_path: Path) -> None:
    t = trained_tiny()
    result = fp32_gate(torch_logits(t.model, t.test_inputs), _run(fp32_path, t.test_inputs), t.test_labels)
    assert result.passed, result.reason


def test_contract_names_opset_and_specs(fp32_path: Path) -> None:
    model = onnx.load(str(fp32_path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    inputs, outputs = tensor_specs(fp32_path)
    def rows(specs: list[TensorSpec]) -> list[tuple[object, ...]]:
        return [(s.name, s.shape, s.dtype, s.layout) for s in specs]

    assert rows(inputs) == [("input", ["batch", *SHAPE], "float32", "NCHW")]
    assert rows(outputs) == [("logits", ["batch", len(LABELS)], "float32", "NC")]


def test_old_opset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="opset 16"):
        export_fp32(TinyNet().eval(), SHAPE, tmp_path / "m.onnx", opset=16)
    assert list(tmp_path.iterdir()) == []


class _TwoHeads(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.mean(dim=(2, 3)), x.amax(dim=(2, 3))


def test_a_model_breaking_the_io_contract_fails_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="outputs"):
        export_fp32(_TwoHeads(), SHAPE, tmp_path / "m.onnx", exporter="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_dynamo_exporter_gives_the_same_contract(tmp_path: Path) -> None:
    t = trained_tiny()
    path = tmp_path / "m.onnx"
    exported = export_fp32(t.model, SHAPE, path, opset=17, exporter="dynamo")
    assert exported.exporter == "dynamo" and exported.opset >= 18  # dynamo cannot go below 18 for ReduceMean
    inputs, outputs = tensor_specs(path)
    assert inputs[0].name == "input" and isinstance(inputs[0].shape[0], str)
    assert outputs[0].name == "logits" and isinstance(outputs[0].shape[0], str)
    for n in (1, 5):
        np.testing.assert_allclose(_run(path, t.test_inputs[:n]), torch_logits(t.model, t.test_inputs[:n]), atol=1e-4)


def test_auto_falls_back_to_dynamo_when_torchscript_export_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def removed(*args: object) -> None:
        raise RuntimeError("the TorchScript-based exporter was removed")

    monkeypatch.setattr(export_onnx, "_torchscript", removed)
    exported = export_fp32(trained_tiny().model, SHAPE, tmp_path / "m.onnx")
    assert exported.exporter == "dynamo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_fp16_keeps_float32_io_and_passes_its_gate(fp32_path: Path, tmp_path: Path) -> None:
    t = trained_tiny()
    path = convert_fp16(fp32_path, tmp_path / "model.fp16.onnx")
    model = onnx.load(str(path))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == f32
    assert model.graph.output[0].type.tensor_type.elem_type == f32
    assert any(init.data_type == f16 for init in model.graph.initializer)
    assert path.stat().st_size < fp32_path.stat().st_size
    result = fp16_gate(torch_logits(t.model, t.test_inputs), _run(path, t.test_inputs), t.test_labels)
    assert result.passed, result.reason


class _Fp16Hostile(nn.Module):
    """Exact in float32, but two classes pass through weights of 1e6, which FP16 conversion clips to 1e4."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        scales = torch.tensor([1e6, 1e6, 1e2, 1e2])
        self.up = nn.Linear(len(LABELS), len(LABELS), bias=False)
        self.down = nn.Linear(len(LABELS), len(LABELS), bias=False)
        with torch.no_grad():
            self.up.weight.copy_(torch.diag(scales))
            self.down.weight.copy_(torch.diag(1 / scales))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The offset keeps scores positive, so shrinking two of them by 100x changes the winner.
        return self.down(self.up(self.base(x) + 10.0)) - 10.0


def test_fp16_variant_with_weights_beyond_fp16_is_rejected_and_removed(tmp_path: Path) -> None:
    t = trained_tiny()
    model = _Fp16Hostile(t.model).eval()
    cfg = ExportConfig(precisions=["fp32", "fp16"], latency_runs=10, golden_samples=4, tensorrt="off")
    report = export_and_verify(model, SHAPE, LABELS, t.test_inputs, t.test_labels, t.calib_inputs, cfg, tmp_path)
    assert [v.precision for v in report.variants] == ["fp32"]
    (rejected,) = report.rejected
    assert rejected.precision == "fp16"
    assert "top-1 agreement with torch" in rejected.reason and "is below 0.9950" in rejected.reason
    assert sorted(p.name for p in tmp_path.iterdir()) == ["golden.npz", "model.fp32.onnx"]
    assert "REJECTED" in report.summary()
