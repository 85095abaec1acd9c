"""The shipped anomaly graph: per channel, the largest of five scaled scores, so every fault kind moves one of them.

Reconstruction error alone misses a channel that goes quiet (stuck, dropped) on recordings that are quiet anyway,
and its mean dilutes a single spike over the window. So the graph computes, per channel: the mean and the peak
squared reconstruction error, the share of readings that repeat the previous one exactly (stuck or dropped), the
window mean's distance from the recipe mean (level shift, drift) and the largest second difference against the
window's typical one (spikes). Each is divided by its percentile over normal training windows, so 1 is "as high as
normal data gets"; the device reduces channels with max. All of it is inside the ONNX graph, so every runtime and
precision computes the same score.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cloud.sensor.models import ConvAutoencoder

FEATURES: tuple[str, ...] = ("reconstruction", "peak", "flat", "level", "spike")
# A step this small between normalized readings counts as a repeat (exact repeats in float32; FP16 rounds).
FLAT_STEP = 1e-6
# Keeps the spike ratio finite on a perfectly smooth or flat window.
SPIKE_FLOOR = 1e-3
# Normal data repeats a reading now and then (BasicMotions: up to 7 of 29 steps), so "flat" is never scaled below
# this share; a channel that never repeated in training would otherwise alarm on its first repeat.
MIN_FLAT_SCALE = 0.1
MIN_SCALE = 1e-6


def window_features(autoencoder: ConvAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """Unscaled features [B, F, C] of normalized windows [B, C, T], in FEATURES order."""
    squared = torch.pow(autoencoder(x) - x, 2.0)
    error, peak = squared.mean(dim=2), squared.amax(dim=2)
    step = x[:, :, 1:] - x[:, :, :-1]
    # Where, not a bool cast: the FP16 converter leaves a Cast's target type at float32 and breaks the graph.
    repeat = torch.where(torch.abs(step) < FLAT_STEP, torch.ones_like(step), torch.zeros_like(step))
    flat = repeat.mean(dim=2)
    level = torch.abs(x.mean(dim=2))
    if autoencoder.length >= 3:
        curve = torch.abs(step[:, :, 1:] - step[:, :, :-1])
        spike = curve.amax(dim=2) / (curve.mean(dim=2) + SPIKE_FLOOR)
    else:  # two readings have no second difference
        spike = torch.zeros_like(level)
    return torch.stack([error, peak, flat, level, spike], dim=1)


class ChannelScores(nn.Module):
    """Normalized windows [B, C, T] to per-channel scores [B, C]: max over features of feature / its normal scale."""

    def __init__(self, autoencoder: ConvAutoencoder, scales: torch.Tensor) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.register_buffer("scales", scales.to(torch.float32).reshape(1, len(FEATURES), -1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled features [B, F, C]: which kind of evidence made a channel's score (for reports and tests)."""
        scales = self.get_buffer("scales")
        return window_features(self.autoencoder, x) / scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).amax(dim=1)


def fit_scales(autoencoder: ConvAutoencoder, normal: np.ndarray, percentile: float, batch: int = 256
               ) -> torch.Tensor:
    """Per feature and channel [F, C]: the percentile of the features over normal training windows, floored."""
    if normal.ndim != 3 or normal.shape[0] == 0:
        raise ValueError(f"feature scales need normal windows [N, C, T], got shape {normal.shape}")
    autoencoder = autoencoder.eval()
    with torch.inference_mode():
        feats = torch.cat([window_features(autoencoder, torch.from_numpy(np.ascontiguousarray(normal[i : i + batch])))
                           for i in range(0, normal.shape[0], batch)]).numpy().astype(np.float64)
    scales = np.percentile(feats, percentile, axis=0)
    floors = np.full((len(FEATURES), 1), MIN_SCALE)
    floors[FEATURES.index("flat")] = MIN_FLAT_SCALE
    return torch.from_numpy(np.maximum(scales, floors).astype(np.float32))


def channel_scores(autoencoder: ConvAutoencoder, normal: np.ndarray, percentile: float) -> ChannelScores:
    """The eval-mode scorer with its scales fitted on the normal windows."""
    return ChannelScores(autoencoder, fit_scales(autoencoder, normal, percentile)).eval()
