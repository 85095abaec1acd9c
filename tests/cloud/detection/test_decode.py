"""The in-graph decode (max-pool peaks + TopK -> boxes) matches a plain numpy reference of the same rule."""

from __future__ import annotations

import numpy as np
import torch

from cloud.detection.model import STRIDE, decode


def numpy_decode(heat_logits: np.ndarray, size: np.ndarray, offset: np.ndarray, k: int, stride: int) -> list[tuple]:
    """Reference: every cell that is the max of its 3x3 neighbourhood in its class, best k, boxes around centres."""
    heat = 1.0 / (1.0 + np.exp(-heat_logits.astype(np.float64)))
    c, h, w = heat.shape
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    peaks = []
    for ci in range(c):
        for y in range(h):
            for x in range(w):
                if heat[ci, y, x] >= padded[ci, y : y + 3, x : x + 3].max():
                    peaks.append((heat[ci, y, x], ci, y, x))
    peaks.sort(key=lambda p: -p[0])
    out = []
    for score, ci, y, x in peaks[:k]:
        cx, cy = (x + offset[0, y, x]) * stride, (y + offset[1, y, x]) * stride
        bw, bh = max(size[0, y, x], 0) * stride, max(size[1, y, x], 0) * stride
        box = np.clip([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 0, None)
        out.append((score, ci, box))
    return out


def test_decode_matches_the_numpy_reference() -> None:
    rng = np.random.default_rng(5)
    b, c, h, w, k = 2, 3, 8, 10, 12
    heat = rng.normal(0, 2, (b, c, h, w)).astype(np.float32)
    size = rng.uniform(-1, 6, (b, 2, h, w)).astype(np.float32)
    offset = rng.uniform(0, 1, (b, 2, h, w)).astype(np.float32)
    boxes, scores, classes = decode(torch.from_numpy(heat), torch.from_numpy(size), torch.from_numpy(offset), k, STRIDE)
    assert boxes.shape == (b, k, 4) and scores.shape == (b, k) and classes.shape == (b, k)
    assert classes.dtype == torch.int64
    for i in range(b):
        expected = numpy_decode(heat[i], size[i], offset[i], k, STRIDE)
        assert len(expected) >= k
        np.testing.assert_allclose(scores[i].numpy(), [e[0] for e in expected], rtol=1e-6)
        assert classes[i].tolist() == [e[1] for e in expected]
        np.testing.assert_allclose(boxes[i].numpy(), np.stack([e[2] for e in expected]), rtol=1e-5, atol=1e-4)


def test_a_peak_suppresses_its_neighbours_but_not_other_classes() -> None:
    heat = np.full((1, 2, 6, 6), -8.0, np.float32)
    heat[0, 0, 2, 2], heat[0, 0, 2, 3] = 4.0, 3.0  # neighbour of a stronger peak: suppressed
    heat[0, 1, 2, 3] = 2.0  # same cell, other class: kept
    size = np.full((1, 2, 6, 6), 2.0, np.float32)
    offset = np.full((1, 2, 6, 6), 0.5, np.float32)
    boxes, scores, classes = decode(torch.from_numpy(heat), torch.from_numpy(size), torch.from_numpy(offset), 2, 4)
    assert classes[0].tolist() == [0, 1]
    np.testing.assert_allclose(scores[0].numpy(), 1 / (1 + np.exp(-np.array([4.0, 2.0]))), rtol=1e-6)
    np.testing.assert_allclose(boxes[0, 0].numpy(), [6.0, 6.0, 14.0, 14.0])  # centre (2.5*4, 2.5*4), 8x8
