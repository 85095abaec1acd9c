"""1-D networks over [B, C, T] windows: a small CNN classifier, and an autoencoder exported as per-channel error."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm1d(cout),
        nn.ReLU(inplace=True),
    )


class SensorCNN(nn.Module):
    """Three conv blocks, global average pooling over time, one linear layer: logits [B, classes]."""

    def __init__(self, channels: int, classes: int, width: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(channels, width, 5), _block(width, 2 * width, 5, stride=2), _block(2 * width, 2 * width, 3)
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


class ConvAutoencoder(nn.Module):
    """Two strided conv layers down to a narrow bottleneck and two transposed ones back up; output [B, C, T]."""

    def __init__(self, channels: int, length: int, width: int = 32, latent: int = 8) -> None:
        super().__init__()
        self.length = length
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(width, latent, 5, stride=2, padding=2), nn.ReLU(),
        )
        # Transposed convolutions, not Upsample: ONNX Resize defeats the INT8 quantizer's shape inference.
        self.decoder = nn.Sequential(
            nn.ConvTranspose1d(latent, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(width, channels, 4, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))[:, :, : self.length]


class ChannelErrors(nn.Module):
    """The autoencoder's training objective: mean squared reconstruction error per channel [B, C].

    What ships wraps the autoencoder in cloud.sensor.channel_scores.ChannelScores, which adds the features this
    error misses; per-channel scores let a device name the channels that contributed most.
    """

    def __init__(self, autoencoder: ConvAutoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.pow(self.autoencoder(x) - x, 2.0).mean(dim=2)


def anomaly_scores(channel_errors: torch.Tensor) -> torch.Tensor:
    """Window score from per-channel errors: their mean (what shared.tasks' anomaly head computes on devices)."""
    return channel_errors.mean(dim=1)
