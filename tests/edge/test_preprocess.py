"""The vectorised preprocessor equals a plain step-by-step reference of the manifest's recipe."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from edge.errors import BackendError, SourceError
from edge.preprocess import Preprocessor
from shared.manifest import Preprocess
from shared.preprocessing import interpolation_for

RNG = np.random.default_rng(7)


def reference(image: np.ndarray, p: Preprocess) -> np.ndarray:
    """Each manifest step spelled out in float64, in the documented order: resize, colour, invert, scale, mean/std."""
    h, w = p.resize
    img = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if img.shape[:2] != (h, w):
        shrink = h <= img.shape[0] and w <= img.shape[1]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    channels = 1 if img.ndim == 2 else img.shape[2]
    if p.channel_order == "gray" and channels > 1:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY if channels == 3 else cv2.COLOR_BGRA2GRAY)
    elif p.channel_order != "gray":
        if channels == 1:
            img = np.stack([img] * 3, axis=-1)
        img = img[:, :, :3]
        if p.channel_order == "rgb":
            img = img[:, :, ::-1]
    x = img.astype(np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if p.invert:
        x = 255.0 - x
    x = (x * p.scale - np.array(p.mean)) / np.array(p.std)
    if p.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return x[None]


GRAY = {"channel_order": "gray", "scale": 1 / 255, "mean": [0.1307], "std": [0.3081]}
RGB = {"channel_order": "rgb", "scale": 1 / 255, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
BGR = {"channel_order": "bgr", "scale": 1.0, "mean": [103.9, 116.8, 123.7], "std": [57.4, 57.1, 58.4]}

CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("gray from BGR, shrink", {**GRAY, "resize": (28, 28)}, (96, 128, 3)),
    ("gray inverted from BGR", {**GRAY, "resize": (28, 28), "invert": True}, (64, 64, 3)),
    ("gray from gray HxW", {**GRAY, "resize": (28, 28)}, (40, 30)),
    ("gray from HxWx1, grow", {**GRAY, "resize": (32, 32)}, (16, 20, 1)),
    ("rgb NCHW, shrink", {**RGB, "resize": (32, 48)}, (120, 160, 3)),
    ("rgb NCHW, grow", {**RGB, "resize": (64, 64)}, (30, 40, 3)),
    ("rgb inverted NHWC", {**RGB, "resize": (24, 24), "invert": True, "layout": "NHWC"}, (50, 50, 3)),
    ("rgb from gray", {**RGB, "resize": (20, 20)}, (40, 40)),
    ("bgr same size", {**BGR, "resize": (48, 64)}, (48, 64, 3)),
    ("gray from BGRA", {**GRAY, "resize": (28, 28)}, (56, 56, 4)),
]


@pytest.mark.parametrize(("case", "spec", "shape"), CASES, ids=[c[0] for c in CASES])
def test_matches_reference(case: str, spec: dict[str, Any], shape: tuple[int, ...]) -> None:
    p = Preprocess.model_validate(spec)
    image = RNG.integers(0, 256, size=shape, dtype=np.uint8)
    out = Preprocessor(p)(image)
    want = reference(image, p)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_sensor_window_is_resized_and_normalised_the_same_way() -> None:
    spec = {"channel_order": "gray", "scale": 0.5, "mean": [1.0], "std": [2.0], "resize": (28, 28)}
    p = Preprocess.model_validate(spec)
    window = RNG.standard_normal((28, 6)).astype(np.float32)
    out = Preprocessor(p)(window)
    want = (cv2.resize(window, (28, 28), interpolation=cv2.INTER_LINEAR).astype(np.float64) * 0.5 - 1.0) / 2.0
    np.testing.assert_allclose(out[0, 0], want, rtol=1e-5, atol=1e-5)


def test_consecutive_frames_of_changing_size_are_each_right() -> None:
    p = Preprocess.model_validate({**RGB, "resize": (32, 32)})
    pre = Preprocessor(p)
    for shape in [(64, 64, 3), (20, 30, 3), (64, 64, 3), (32, 32, 3)]:
        image = RNG.integers(0, 256, size=shape, dtype=np.uint8)
        np.testing.assert_allclose(pre(image), reference(image, p), rtol=1e-5, atol=1e-5)


def test_model_input_size_must_match_the_manifest_resize() -> None:
    p = Preprocess.model_validate({**GRAY, "resize": (28, 28)})
    with pytest.raises(BackendError, match="takes 32x32 inputs but the manifest resizes frames to 28x28"):
        Preprocessor(p, input_hw=(32, 32))


def test_frames_of_unusable_shape_are_refused() -> None:
    pre = Preprocessor(Preprocess.model_validate({**GRAY, "resize": (28, 28)}))
    with pytest.raises(SourceError, match="not HxW"):
        pre(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(SourceError, match="not HxW"):
        pre(np.zeros((2, 10, 10, 3), np.uint8))


def test_interpolation_is_area_when_shrinking_and_linear_otherwise() -> None:
    assert interpolation_for((100, 100), (28, 28)) == "area"
    assert interpolation_for((20, 100), (28, 28)) == "linear"
    assert interpolation_for((10, 10), (28, 28)) == "linear"
