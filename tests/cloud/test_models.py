"""Models: output shapes, rebuild from arch_config, and ONNX opset-17 export with a dynamic batch axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cloud.errors import CloudError
from cloud.models import ARCHS, NATIVE_SIZE, build_model


@pytest.mark.parametrize(
    ("arch", "channels", "width"), [("digits_cnn", 1, 1.0), ("resnet18", 3, 0.25), ("mobilenetv2", 3, 0.25)]
)
def test_native_input_gives_one_logit_per_class(arch: str, channels: int, width: float) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=7, in_channels=channels, width=width).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, channels, *NATIVE_SIZE[arch]))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_reference_default_is_camera_sized() -> None:
    assert NATIVE_SIZE["resnet18"] == (224, 224)
    assert set(ARCHS) == {"digits_cnn", "resnet18", "mobilenetv2"}


def test_width_multiplier_scales_parameters() -> None:
    def count(width: float) -> int:
        return sum(p.numel() for p in build_model("resnet18", 10, 3, width).parameters())

    assert count(0.5) < count(1.0) / 3
    assert 11_000_000 < count(1.0) < 11_800_000  # ResNet-18 class (11.2M with a 10-way head)


def test_arch_config_rebuilds_the_same_network() -> None:
    torch.manual_seed(0)
    model = build_model("digits_cnn", 10, 1, 1.0, 0.1)
    clone = build_model(**model.arch_config)  # type: ignore[arg-type]
    clone.load_state_dict(model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    clone.eval()
    with torch.inference_mode():
        torch.testing.assert_close(model(x), clone(x))


def test_unknown_arch_and_single_class_are_refused() -> None:
    with pytest.raises(CloudError, match="unknown model architecture 'vgg'"):
        build_model("vgg", 10)
    with pytest.raises(CloudError, match="at least 2 classes"):
        build_model("digits_cnn", 1, 1)


@pytest.mark.parametrize(
    ("arch", "channels", "hw"), [("digits_cnn", 1, (28, 28)), ("resnet18", 3, (64, 64)), ("mobilenetv2", 3, (64, 64))]
)
def test_exports_to_onnx_opset17_with_dynamic_batch(
    tmp_path: Path, arch: str, channels: int, hw: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 10, channels, width=0.25).eval()
    path = tmp_path / f"{arch}.onnx"
    torch.onnx.export(
        model, (torch.randn(1, channels, *hw),), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, channels, *hw)).astype(np.float32)
        (got,) = session.run(None, {"input": x})
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
