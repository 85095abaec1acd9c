"""A small anchor-free CenterNet-style detector and its in-graph decode (max-pool peaks + TopK -> boxes)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDE = 4
HEAD_PRIOR = -2.19  # sigmoid(-2.19) ~ 0.1: CenterNet's prior so the focal loss starts stable


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class CenterNet(nn.Module):
    """Backbone at strides 2-16, a top-down merge back to stride 4, and heatmap / size / offset heads."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        c1, c2, c3, c4 = width, width * 2, width * 4, width * 6
        self.num_classes = num_classes
        self.arch_config = {"num_classes": num_classes, "in_channels": in_channels, "width": width}
        self.stem = _conv(in_channels, c1, 2)
        self.s4 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2))
        self.s8 = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3))
        self.s16 = nn.Sequential(_conv(c3, c4, 2), _conv(c4, c4), _conv(c4, c4))
        self.lat8 = nn.Conv2d(c3, c3, 1)
        self.top16 = nn.Conv2d(c4, c3, 1)
        self.merge8 = _conv(c3, c3)
        self.lat4 = nn.Conv2d(c2, c2, 1)
        self.top8 = nn.Conv2d(c3, c2, 1)
        self.merge4 = _conv(c2, c2)
        # One shared 3x3 feature layer, then 1x1 outputs: the heads at stride 4 would otherwise cost most MACs.
        self.head = nn.Sequential(nn.Conv2d(c2, c3, 3, 1, 1), nn.ReLU(inplace=True))
        self.heatmap = nn.Conv2d(c3, num_classes, 1)
        self.size = nn.Conv2d(c3, 2, 1)
        self.offset = nn.Conv2d(c3, 2, 1)
        nn.init.constant_(self.heatmap.bias, HEAD_PRIOR)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw heads at stride 4: heatmap logits [B,C,h,w], size [B,2,h,w] (cells), offset [B,2,h,w]."""
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        p8 = self.merge8(self.lat8(f8) + F.interpolate(self.top16(f16), scale_factor=2.0, mode="nearest"))
        p4 = self.merge4(self.lat4(f4) + F.interpolate(self.top8(p8), scale_factor=2.0, mode="nearest"))
        feat = self.head(p4)
        return self.heatmap(feat), self.size(feat), self.offset(feat)


def cell_grids(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x and y of each cell of an h x w map, flattened row-major, as float rows [1, h*w]."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return xs.reshape(1, h * w), ys.reshape(1, h * w)


def decode(
    heat_logits: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, top_k: int, stride: int = STRIDE,
    grids: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peaks of the sigmoid heatmap (3x3 max-pool keeps local maxima), top_k over classes x cells, then boxes.

    Returns boxes [B,K,4] xyxy in model-input pixels, scores [B,K], class ids [B,K] int64; only ops every
    runtime has (Sigmoid, MaxPool, Equal, TopK, GatherElements).
    """
    b, c, h, w = heat_logits.shape
    heat = torch.sigmoid(heat_logits)
    peaks = F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = torch.where(peaks == heat, heat, torch.zeros_like(heat))  # Where, not a bool->float Cast
    scores, flat = torch.topk(heat.reshape(b, c * h * w), top_k, dim=1)
    classes = torch.div(flat, h * w, rounding_mode="floor")
    cell = flat - classes * (h * w)
    # Cell coordinates are looked up in float grids (constants once exported), not cast from TopK's int64
    # indices: an FP16 conversion retypes every float tensor and a Cast-to-float would then disagree.
    grid_x, grid_y = cell_grids(h, w) if grids is None else grids
    xs = torch.gather(grid_x.to(heat.dtype).expand(b, -1), 1, cell)
    ys = torch.gather(grid_y.to(heat.dtype).expand(b, -1), 1, cell)
    gather = cell.unsqueeze(1).expand(b, 2, top_k)
    wh = torch.gather(size.reshape(b, 2, h * w), 2, gather)
    off = torch.gather(offset.reshape(b, 2, h * w), 2, gather)
    cx = (xs + off[:, 0]) * stride
    cy = (ys + off[:, 1]) * stride
    half_w = wh[:, 0].clamp(min=0) * (stride / 2)
    half_h = wh[:, 1].clamp(min=0) * (stride / 2)
    boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2)
    boxes = boxes.clamp(min=0.0)
    return boxes, scores, classes


class DetectorExport(nn.Module):
    """The network plus decode: the graph every runtime runs, outputs (boxes, scores, class_ids)."""

    def __init__(self, net: CenterNet, top_k: int, input_hw: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.top_k = top_k
        self.input_hw = input_hw
        grid_x, grid_y = cell_grids(input_hw[0] // STRIDE, input_hw[1] // STRIDE)
        self.register_buffer("grid_x", grid_x, persistent=False)
        self.register_buffer("grid_y", grid_y, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes [B,K,4] xyxy model-input pixels, scores [B,K], class ids [B,K]."""
        heat, size, offset = self.net(x)
        grids: tuple[torch.Tensor, torch.Tensor] = (self.grid_x, self.grid_y)  # type: ignore[assignment]
        boxes, scores, classes = decode(heat, size, offset, self.top_k, STRIDE, grids)
        h, w = self.input_hw
        limit = torch.tensor([w, h, w, h], dtype=boxes.dtype)
        return torch.minimum(boxes, limit), scores, classes
