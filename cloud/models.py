"""Plain-torch classifiers (no torchvision): a small digits CNN and camera-sized ResNet-18 / MobileNetV2 references."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from cloud.errors import CloudError

ARCHS = ("digits_cnn", "resnet18", "mobilenetv2")
# The input each architecture is designed for (C is taken from the data; H, W are what the model expects).
NATIVE_SIZE = {"digits_cnn": (28, 28), "resnet18": (224, 224), "mobilenetv2": (224, 224)}


def _ch(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by the width multiplier, rounded to a multiple of divisor (MobileNet rule)."""
    scaled = max(divisor, int(channels * width + divisor / 2) // divisor * divisor)
    if scaled < 0.9 * channels * width:
        scaled += divisor
    return scaled


def _conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class _GlobalAvgPool(nn.Module):
    """Mean over H and W: deterministic on CUDA (adaptive pooling's backward is not) and exports to ONNX cleanly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class DigitsCNN(nn.Module):
    """Two conv blocks and a dense head over the 7x7 map: trains in well under a minute on two CPU cores."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        width: float = 1.0,
        dropout: float = 0.1,
        image_size: tuple[int, int] = (28, 28),
    ) -> None:
        super().__init__()
        c1, c2, hidden = _ch(16, width), _ch(32, width), _ch(128, width)
        height, wide = image_size[0] // 4, image_size[1] // 4
        if height < 1 or wide < 1:
            raise CloudError(f"digits_cnn needs inputs of at least 4x4 pixels, got {image_size[0]}x{image_size[1]}")
        self.features = nn.Sequential(
            *_conv_bn(in_channels, c1), nn.ReLU(inplace=True),
            *_conv_bn(c1, c1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            *_conv_bn(c1, c2), nn.ReLU(inplace=True),
            *_conv_bn(c2, c2), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * height * wide, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, 3, stride), nn.ReLU(inplace=True), *_conv_bn(cout, cout, 3))
        self.shortcut: nn.Module = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride)) if stride != 1 or cin != cout else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (dense 3x3 convs, which ONNX Runtime INT8 speeds up well); width scales every stage."""

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.0,
        image_size: tuple[int, int] = (224, 224),  # unused: global pooling takes any size
    ) -> None:
        super().__init__()
        widths = [_ch(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            *_conv_bn(in_channels, widths[0], 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        layers: list[nn.Module] = []
        cin = widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(_GlobalAvgPool(), nn.Dropout(dropout), nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in self.layers:
            # Residual branches start as identity, which keeps very short trainings stable.
            nn.init.zeros_(cast(nn.BatchNorm2d, cast(_BasicBlock, block).body[-1]).weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, cout, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 (depthwise separable; smaller and faster in FP32, but gains less from ORT INT8 than ResNet)."""

    # (expansion, channels, repeats, first stride) per stage, as in the paper.
    _SETTINGS = (
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)
    )

    def __init__(
        self, num_classes: int, in_channels: int = 3, width: float = 1.0, dropout: float = 0.2,
        image_size: tuple[int, int] = (224, 224),  # unused: global pooling takes any size
    ) -> None:
        super().__init__()
        cin = _ch(32, width)
        last = _ch(1280, max(1.0, width))
        layers: list[nn.Module] = [*_conv_bn(in_channels, cin, 3, 2), nn.ReLU6(inplace=True)]
        for expand, c, n, s in self._SETTINGS:
            cout = _ch(c, width)
            for i in range(n):
                layers.append(_InvertedResidual(cin, cout, s if i == 0 else 1, expand))
                cin = cout
        layers += [*_conv_bn(cin, last, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(_GlobalAvgPool(), nn.Dropout(dropout), nn.Linear(last, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": DigitsCNN,
    "resnet18": ResNet18,
    "mobilenetv2": MobileNetV2,
}


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    width: float = 1.0,
    dropout: float = 0.0,
    image_size: tuple[int, int] | list[int] | None = None,
) -> nn.Module:
    """A fresh model; `model.arch_config` holds these arguments so `build_model(**arch_config)` rebuilds it."""
    if arch not in _BUILDERS:
        raise CloudError(f"unknown model architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if num_classes < 2:
        raise CloudError(f"a classifier needs at least 2 classes, got {num_classes}")
    size = (int(image_size[0]), int(image_size[1])) if image_size is not None else NATIVE_SIZE[arch]
    model = _BUILDERS[arch](
        num_classes=num_classes, in_channels=in_channels, width=width, dropout=dropout, image_size=size
    )
    config: dict[str, Any] = {
        "arch": arch, "num_classes": num_classes, "in_channels": in_channels, "width": width, "dropout": dropout,
        "image_size": list(size),
    }
    model.arch_config = config  # type: ignore[assignment]
    return model
