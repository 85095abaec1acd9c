"""Train-time augmentation with torch ops only: small random shifts and rotations of a preprocessed batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_shift_rotate(
    batch: torch.Tensor, max_shift: float = 0.1, max_degrees: float = 10.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Each image moved by up to max_shift of its size and rotated by up to max_degrees; edges are repeated.

    Runs on the batch's device after normalization, so the fill is the image's own border, not a fake 0.
    """
    n = batch.shape[0]
    uniform = torch.rand(n, 3, generator=generator, device=batch.device, dtype=batch.dtype) * 2 - 1
    angle = uniform[:, 0] * math.radians(max_degrees)
    shift = uniform[:, 1:] * (2 * max_shift)  # grid coordinates span 2 per image size
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border", align_corners=False)
