"""One preprocessing recipe: the trainer's tensors and a device's tensors for the same image are the same bits."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.preprocessing import normalize, preprocess_images, to_model_pixels
from edge.preprocess import Preprocessor
from shared import preprocessing
from shared.manifest import Preprocess
from shared.preprocessing import (
    FramePreprocessor,
    boxes_to_frame,
    boxes_to_input,
    frame_geometry,
    letterbox_geometry,
    stretch_geometry,
)


def bits(x: np.ndarray) -> np.ndarray:
    """float32 as raw bits, so -0.0 vs 0.0 or any last-bit difference fails the comparison."""
    assert x.dtype == np.float32
    return np.ascontiguousarray(x).view(np.uint32)


@st.composite
def recipes(draw: st.DrawFn, layouts: tuple[str, ...] = ("NCHW",)) -> Preprocess:
    order = draw(st.sampled_from(["gray", "rgb"]))
    n = 1 if order == "gray" else 3
    stats = st.floats(min_value=-2.0, max_value=200.0, allow_nan=False)
    return Preprocess(
        resize=(draw(st.integers(1, 40)), draw(st.integers(1, 40))),
        channel_order=order,  # type: ignore[arg-type]
        scale=draw(st.sampled_from([1 / 255, 1.0, 0.5, 1 / 127.5])),
        mean=draw(st.lists(stats, min_size=n, max_size=n)),
        std=draw(st.lists(st.floats(min_value=1e-3, max_value=100.0), min_size=n, max_size=n)),
        layout=draw(st.sampled_from(layouts)),  # type: ignore[arg-type]
        invert=draw(st.booleans()),
        resize_mode=draw(st.sampled_from(["stretch", "letterbox"])),  # type: ignore[arg-type]
        pad_value=draw(st.sampled_from([0, 114, 255])),
    )


@st.composite
def rgb_images(draw: st.DrawFn) -> np.ndarray:
    """An image as the trainer decodes it: HxW gray or HxWx3 RGB uint8, any size."""
    h, w = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    shape = (h, w) if draw(st.booleans()) else (h, w, 3)
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def as_camera_frame(rgb: np.ndarray) -> np.ndarray:
    """The same image as a camera hands it to the agent: BGR channel order."""
    return rgb if rgb.ndim == 2 else np.ascontiguousarray(rgb[:, :, ::-1])


@settings(max_examples=250, deadline=None)
@given(recipes(), rgb_images())
def test_trainer_and_device_give_the_same_tensor_for_the_same_image(spec: Preprocess, rgb: np.ndarray) -> None:
    device = Preprocessor(spec)(as_camera_frame(rgb))
    trainer = preprocess_images([rgb], spec)
    np.testing.assert_array_equal(bits(trainer), bits(device))
    # The training split path: pixels stored at model size, normalized per batch.
    order = spec.channel_order
    assert order != "bgr"
    stored = to_model_pixels(rgb, spec.resize, order, spec.resize_mode, spec.pad_value)
    np.testing.assert_array_equal(bits(normalize(stored[None], spec)), bits(device))


@settings(max_examples=100, deadline=None)
@given(recipes(layouts=("NHWC",)), rgb_images())
def test_nhwc_recipes_agree_too(spec: Preprocess, rgb: np.ndarray) -> None:
    device = Preprocessor(spec)(as_camera_frame(rgb))
    stored = FramePreprocessor(spec, source="rgb").model_pixels(rgb)
    np.testing.assert_array_equal(bits(preprocessing.normalize(stored[None], spec)), bits(device))


@pytest.mark.parametrize("source_hw", [(480, 640), (224, 224), (100, 90), (30, 40)])
@pytest.mark.parametrize("order", ["gray", "rgb", "bgr"])
def test_camera_sizes_agree_bit_for_bit(source_hw: tuple[int, int], order: str) -> None:
    n = 1 if order == "gray" else 3
    spec = Preprocess.model_validate({"resize": (224, 224), "channel_order": order, "scale": 1 / 255,
                                      "mean": [0.485, 0.456, 0.406][:n], "std": [0.229, 0.224, 0.225][:n]})
    rgb = np.random.default_rng(sum(source_hw)).integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    device = Preprocessor(spec)(as_camera_frame(rgb))
    from_rgb = FramePreprocessor(spec, source="rgb")
    out = np.empty(from_rgb.output_shape, dtype=np.float32)
    np.testing.assert_array_equal(bits(from_rgb.preprocess_into(rgb, out)), bits(device))


def test_preprocess_into_fills_the_callers_buffer_with_or_without_the_batch_axis() -> None:
    spec = Preprocess(resize=(4, 5), channel_order="rgb", scale=1 / 255, mean=[0.1] * 3, std=[0.2] * 3)
    frames = FramePreprocessor(spec)
    frame = np.random.default_rng(5).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    batch = np.full((1, 3, 4, 5), np.nan, dtype=np.float32)
    single = np.full((3, 4, 5), np.nan, dtype=np.float32)
    assert frames.preprocess_into(frame, batch) is batch
    assert frames.preprocess_into(frame, single) is single
    assert np.isfinite(batch).all()
    np.testing.assert_array_equal(batch[0], single)
    with pytest.raises(TypeError, match="expected float32"):
        frames.preprocess_into(frame, np.empty((1, 3, 4, 5), dtype=np.float64))
    with pytest.raises(TypeError, match=r"expected float32\(1, 3, 4, 5\)"):
        frames.preprocess_into(frame, np.empty((1, 3, 5, 4), dtype=np.float32))


def test_frames_at_model_size_need_no_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = Preprocess(resize=(6, 6), channel_order="rgb", scale=1.0, mean=[0.0] * 3, std=[1.0] * 3)
    bgr = np.random.default_rng(6).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails
    out = np.empty((1, 3, 6, 6), dtype=np.float32)
    FramePreprocessor(spec, source="bgr").preprocess_into(bgr, out)
    np.testing.assert_array_equal(out[0], bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32))
    with pytest.raises(ImportError, match="opencv-python-headless"):
        FramePreprocessor(spec, source="bgr").preprocess_into(np.zeros((12, 12, 3), np.uint8), out)


def test_unusable_frames_are_named_in_one_line() -> None:
    frames = FramePreprocessor(Preprocess(resize=(4, 4), channel_order="gray", scale=1.0, mean=[0.0], std=[1.0]))
    out = np.empty(frames.output_shape, dtype=np.float32)
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((1, 4, 4, 3), np.uint8), np.zeros((0, 4), np.uint8),
                np.zeros((4, 4), bool)):
        with pytest.raises(ValueError, match="HxW, HxWx1, HxWx3 or HxWx4"):
            frames.preprocess_into(bad, out)


@pytest.mark.parametrize("source_hw", [(480, 640), (640, 480), (100, 90), (3, 4), (1, 200)])
@pytest.mark.parametrize("order", ["gray", "rgb"])
def test_letterboxed_camera_frames_agree_bit_for_bit(source_hw: tuple[int, int], order: str) -> None:
    n = 1 if order == "gray" else 3
    spec = Preprocess.model_validate({"resize": (64, 64), "channel_order": order, "scale": 1 / 255,
                                      "mean": [0.2] * n, "std": [0.3] * n, "resize_mode": "letterbox"})
    rgb = np.random.default_rng(sum(source_hw)).integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    device = Preprocessor(spec)(as_camera_frame(rgb))
    np.testing.assert_array_equal(bits(preprocess_images([rgb], spec)), bits(device))
    stored = to_model_pixels(rgb, spec.resize, spec.channel_order, "letterbox", spec.pad_value)  # type: ignore[arg-type]
    np.testing.assert_array_equal(bits(normalize(stored[None], spec)), bits(device))


@pytest.mark.parametrize(
    ("frame_hw", "input_hw", "resized_hw", "top", "left"),
    [
        ((480, 640), (640, 640), (480, 640), 80, 0),  # a VGA camera into a YOLO input: bands top and bottom
        ((640, 480), (640, 640), (640, 480), 0, 80),
        ((100, 50), (64, 64), (64, 32), 0, 16),
        ((3, 4), (4, 4), (3, 4), 0, 0),  # one pixel of padding: Ultralytics puts it at the bottom
        ((720, 1280), (384, 640), (360, 640), 12, 0),
        ((1, 1000), (32, 32), (1, 32), 15, 0),  # never less than one pixel
    ],
)
def test_letterbox_geometry_keeps_the_aspect_and_centres_like_ultralytics(
    frame_hw: tuple[int, int], input_hw: tuple[int, int], resized_hw: tuple[int, int], top: int, left: int
) -> None:
    g = letterbox_geometry(frame_hw, input_hw)
    assert (g.resized_hw, g.pad_top, g.pad_left) == (resized_hw, top, left)


def test_letterbox_pads_with_the_recorded_value_around_the_resized_frame() -> None:
    spec = Preprocess(resize=(8, 8), channel_order="rgb", scale=1.0, mean=[0.0] * 3, std=[1.0] * 3,
                      resize_mode="letterbox", pad_value=114)
    rgb = np.random.default_rng(3).integers(0, 256, (4, 8, 3), dtype=np.uint8)  # 2:1, already 8 wide
    out = FramePreprocessor(spec, source="rgb").model_pixels(rgb)
    assert out.shape == (8, 8, 3)
    assert (out[:2] == 114).all() and (out[6:] == 114).all()
    np.testing.assert_array_equal(out[2:6], rgb)
    stretched = FramePreprocessor(spec.model_copy(update={"resize_mode": "stretch"}), source="rgb").model_pixels(rgb)
    assert not (stretched[:2] == 114).all()


def test_stretch_stays_the_default_of_a_recipe() -> None:
    spec = Preprocess(resize=(4, 4), channel_order="gray", scale=1.0, mean=[0.0], std=[1.0])
    assert spec.resize_mode == "stretch"
    assert frame_geometry(spec, (8, 2)) == stretch_geometry((8, 2), (4, 4))


def test_boxes_map_back_from_the_letterboxed_input_to_the_frame() -> None:
    g = letterbox_geometry((480, 640), (640, 640))
    boxes = np.array([[0.0, 80.0, 640.0, 560.0], [320.0, 320.0, 336.0, 352.0]])
    np.testing.assert_allclose(boxes_to_frame(boxes, g), [[0, 0, 640, 480], [320, 240, 336, 272]])
    # Boxes reaching into the padding are clipped to the frame.
    np.testing.assert_allclose(boxes_to_frame(np.array([-5.0, 10.0, 700.0, 600.0]), g), [0, 0, 640, 480])
    # A shrunk frame: 1280x720 into 640x640 halves every coordinate, with 140 rows of padding on top.
    g = letterbox_geometry((720, 1280), (640, 640))
    np.testing.assert_allclose(boxes_to_frame(np.array([[100.0, 150.0, 200.0, 490.0]]), g), [[200, 20, 400, 700]])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.integers(1, 2000), st.integers(8, 1024), st.integers(8, 1024), st.booleans(),
       st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_boxes_to_input_and_back_is_the_identity(
    h: int, w: int, th: int, tw: int, letterbox: bool, corners: list[float]
) -> None:
    g = letterbox_geometry((h, w), (th, tw)) if letterbox else stretch_geometry((h, w), (th, tw))
    x1, x2 = sorted(corners[:2])
    y1, y2 = sorted(corners[2:])
    box = np.array([x1 * w, y1 * h, x2 * w, y2 * h])
    inside = boxes_to_input(box, g)
    assert (inside[0::2] >= g.pad_left - 1e-6).all() and (inside[0::2] <= g.pad_left + g.resized_hw[1] + 1e-6).all()
    np.testing.assert_allclose(boxes_to_frame(inside, g), box, rtol=1e-9, atol=1e-6)


def test_box_arrays_of_the_wrong_shape_are_refused() -> None:
    g = stretch_geometry((4, 4), (4, 4))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        boxes_to_frame(np.zeros((2, 5)), g)
