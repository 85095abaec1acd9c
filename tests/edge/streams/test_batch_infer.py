"""A batch's output splits into per-frame outputs; a model that refuses a batch runs frame by frame from then on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.hot_swap import ModelSlot, prepare
from edge.streams.batch_infer import BatchRunner, split_output
from tests.edge.fake_model import FakeModel
from tests.edge.tiny_onnx import manifest_for, write_classifier


def test_outputs_split_per_frame_by_name_or_as_one_array() -> None:
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    parts = split_output(logits, 3)
    assert parts is not None and [p.tolist() for p in parts] == [[[0, 1]], [[2, 3]], [[4, 5]]]  # type: ignore[union-attr]
    named = split_output({"boxes": np.zeros((2, 5, 4)), "scores": np.ones((2, 5))}, 2)
    assert named is not None and named[1]["scores"].shape == (1, 5)  # type: ignore[index]


def test_an_output_without_a_per_frame_axis_cannot_be_split() -> None:
    assert split_output(np.zeros((7, 6)), 2) is None  # e.g. NMS rows of the whole batch
    assert split_output({"n": np.array(3)}, 2) is None


def test_a_model_that_refuses_a_batch_runs_frame_by_frame_and_keeps_doing_so(tmp_path: Path) -> None:
    model = FakeModel(4, fail_runs=frozenset({2}))  # run 1 is the warm-up; run 2 is the first batch
    manifest = manifest_for(write_classifier(tmp_path / "m.onnx"))
    slot = ModelSlot()
    slot.install(prepare(model, manifest, manifest.variants[0]))
    serving = slot.current
    assert serving is not None
    runner = BatchRunner()
    tensors = [np.zeros((1, 1, 28, 28), np.float32) for _ in range(3)]
    outputs = runner.run(serving, tensors)
    assert len(outputs) == 3 and model.runs == 5 and runner.batches == 0
    runner.run(serving, tensors)
    assert model.runs == 8 and not runner.can_batch(serving)


class RecordingModel(FakeModel):
    """Keeps every batch it was given (the array itself) and a copy of what it held then."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[np.ndarray] = []
        self.seen: list[np.ndarray] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.given.append(batch)
        self.seen.append(batch.copy())
        return super().run(batch)


def test_batches_of_one_shape_reuse_one_input_array_and_each_holds_its_own_frames(tmp_path: Path) -> None:
    model = RecordingModel()
    manifest = manifest_for(write_classifier(tmp_path / "m.onnx"))
    slot = ModelSlot()
    slot.install(prepare(model, manifest, manifest.variants[0]))
    serving = slot.current
    assert serving is not None
    first = [np.full((1, 1, 28, 28), v, np.float32) for v in (1, 2, 3)]
    second = [np.full((1, 1, 28, 28), v, np.float32) for v in (7, 8, 9)]
    runner = BatchRunner()
    runner.run(serving, first)
    runner.run(serving, second)
    assert runner.batches == 2
    assert [b[:, 0, 0, 0].tolist() for b in model.seen[-2:]] == [[1, 2, 3], [7, 8, 9]]
    assert model.given[-1] is model.given[-2], "each batch allocated a fresh input array"
    runner.run(serving, first[:2])  # another size: its own array, same frames
    assert model.seen[-1][:, 0, 0, 0].tolist() == [1, 2]
