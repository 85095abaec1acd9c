"""CenterNet losses: penalty-reduced focal loss on heatmaps, L1 on sizes and offsets at object centres."""

from __future__ import annotations

import torch


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CornerNet/CenterNet focal loss, normalised by the number of objects (peaks equal to 1)."""
    pred = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = torch.log(pred) * (1 - pred).pow(alpha) * pos
    neg_loss = torch.log(1 - pred) * pred.pow(alpha) * (1 - target).pow(beta) * neg
    num_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos.clamp(min=1.0)


def gathered_l1(pred: torch.Tensor, index: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L1 between pred [B,2,h,w] at flat cells index [B,M] and target [B,M,2], over mask [B,M]."""
    b, ch = pred.shape[:2]
    picked = torch.gather(pred.reshape(b, ch, -1), 2, index.unsqueeze(1).expand(b, ch, index.shape[1]))
    diff = (picked.transpose(1, 2) - target).abs() * mask.unsqueeze(2)
    return diff.sum() / (mask.sum() * ch).clamp(min=1.0)
