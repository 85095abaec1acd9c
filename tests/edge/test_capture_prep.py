"""Preprocessing ahead on the capture thread gives the frame loop exactly what it would compute itself."""

from __future__ import annotations

import numpy as np

from edge.capture_prep import AheadOfTimePreprocess
from edge.hot_swap import ModelSlot, prepare
from edge.sources.base import Frame
from shared.manifest import Golden
from tests.edge.fake_model import FakeModel
from tests.edge.package_factory import GOLDEN_FILE, make_manifest, make_variant, onnx_model


def test_ahead_of_time_tensor_equals_the_frame_loops_and_follows_swaps() -> None:
    slot = ModelSlot()
    prep = AheadOfTimePreprocess(slot)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    frame = Frame(0, image, 0.0, "t")
    prep(frame)
    assert frame.tensor is None, "nothing is prepared before a model is served"
    data = onnx_model().SerializeToString()
    variant = make_variant("model.fp32.onnx", data)
    manifest = make_manifest("tiny", 1, [variant], Golden(file=GOLDEN_FILE, sha256="0" * 64, bytes=1, count=1))
    serving = prepare(FakeModel(shape=("batch", 1, 8, 8)), manifest, variant)
    slot.install(serving)
    prep(frame)
    assert frame.prepared_for == serving.generation and frame.prep_s > 0
    np.testing.assert_array_equal(frame.tensor, serving.preprocessor(image))
    other = Frame(1, image, 0.0, "t")
    prep(other)
    assert other.tensor is not frame.tensor, "queued frames never share a buffer"
