"""The trainer's preprocessing equals the manifest recipe computed the plain way, pixel by pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from cloud.errors import DataError
from cloud.preprocessing import fit_preprocess, normalize, preprocess_images, to_model_pixels
from shared.manifest import Preprocess


def _reference(frame: np.ndarray, spec: Preprocess) -> np.ndarray:
    """The recipe spelled out in float64: OpenCV resize (area/linear), OpenCV luma or RGB, invert, scale, mean/std."""
    h, w = spec.resize
    img = frame
    if img.shape[:2] != (h, w):
        shrink = w <= img.shape[1] and h <= img.shape[0]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if spec.channel_order == "gray":
        planes = [cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)]
    else:
        rgb = img.astype(np.float64)
        planes = [rgb[..., 0], rgb[..., 1], rgb[..., 2]]
    out = np.empty((len(planes), h, w))
    for c, plane in enumerate(planes):
        for y in range(h):
            for x in range(w):
                v = plane[y, x]
                if spec.invert:
                    v = 255.0 - v
                out[c, y, x] = (v * spec.scale - spec.mean[c]) / spec.std[c]
    return out


@pytest.mark.parametrize(
    ("channel_order", "source_hw", "target_hw", "invert"),
    [
        ("gray", (28, 28), (28, 28), False),
        ("gray", (40, 30), (20, 15), True),
        ("rgb", (10, 12), (24, 20), False),
        ("rgb", (33, 47), (16, 16), True),
    ],
)
def test_preprocess_matches_reference(
    channel_order: str, source_hw: tuple[int, int], target_hw: tuple[int, int], invert: bool
) -> None:
    rng = np.random.default_rng(0)
    channels = 1 if channel_order == "gray" else 3
    spec = Preprocess(
        resize=target_hw, channel_order=channel_order, scale=1 / 255,  # type: ignore[arg-type]
        mean=[0.1, 0.2, 0.3][:channels], std=[0.25, 0.5, 0.75][:channels], invert=invert,
    )
    frames = [rng.integers(0, 256, (*source_hw, 3), dtype=np.uint8) for _ in range(3)]
    got = preprocess_images(frames, spec)
    assert got.shape == (3, channels, *target_hw) and got.dtype == np.float32 and got.flags.c_contiguous
    want = np.stack([_reference(f, spec) for f in frames])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_gray_frames_and_single_channel_frames_agree() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)
    spec = Preprocess(resize=(28, 28), channel_order="gray", scale=1 / 255, mean=[0.0], std=[1.0])
    a = preprocess_images([frame], spec)
    b = preprocess_images([frame[:, :, None]], spec)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[0, 0], frame / 255.0, atol=1e-6)


def test_model_pixels_are_idempotent() -> None:
    frame = np.random.default_rng(2).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    once = to_model_pixels(frame, (20, 30), "rgb")
    assert once.shape == (20, 30, 3)
    np.testing.assert_array_equal(to_model_pixels(once, (20, 30), "rgb"), once)


def test_normalize_single_image_is_chw() -> None:
    spec = Preprocess(resize=(2, 3), channel_order="rgb", scale=1.0, mean=[0, 0, 0], std=[1, 1, 1])
    pixels = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    out = normalize(pixels, spec)
    assert out.shape == (3, 2, 3)
    assert out[1, 1, 2] == pixels[1, 2, 1]


def test_fit_preprocess_standardizes_the_train_split() -> None:
    pixels = np.random.default_rng(3).integers(0, 120, (100, 8, 8, 3), dtype=np.uint8)
    spec = fit_preprocess(pixels, (8, 8), "rgb")
    x = normalize(pixels, spec)
    assert np.all(np.abs(x.mean(axis=(0, 2, 3))) < 1e-3)
    assert np.all(np.abs(x.std(axis=(0, 2, 3)) - 1) < 1e-3)


def test_bad_frames_are_data_errors() -> None:
    spec = Preprocess(resize=(4, 4), channel_order="gray", scale=1 / 255, mean=[0.0], std=[1.0])
    with pytest.raises(DataError, match="uint8"):
        preprocess_images([np.zeros((4, 4), dtype=np.float32)], spec)
    with pytest.raises(DataError, match="HxWx3"):
        preprocess_images([np.zeros((4, 4, 2), dtype=np.uint8)], spec)
    with pytest.raises(DataError, match="NCHW"):
        preprocess_images([np.zeros((4, 4), dtype=np.uint8)], spec.model_copy(update={"layout": "NHWC"}))


def test_decoded_pil_images_give_what_their_arrays_give() -> None:
    frame = np.random.default_rng(4).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    spec = Preprocess(resize=(8, 12), channel_order="rgb", scale=1 / 255, mean=[0.5] * 3, std=[0.25] * 3)
    want = preprocess_images([frame], spec)
    np.testing.assert_array_equal(preprocess_images([Image.fromarray(frame)], spec), want)
    np.testing.assert_array_equal(preprocess_images([Image.fromarray(frame).convert("RGBA")], spec), want)
