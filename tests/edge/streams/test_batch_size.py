"""The batch size comes from measurement: the largest size whose latency stays within the configured budget."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.config import StreamConfig, SyntheticSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, prepare
from edge.sources.base import FrameSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.streams.batch_infer import BatchRunner
from edge.streams.batch_size import candidate_sizes, choose_batch_size, measure
from edge.streams.server import MultiStreamLoop
from edge.supervise import Health
from tests.edge.fake_model import FakeModel
from tests.edge.streams.test_server import slot_for
from tests.edge.tiny_onnx import manifest_for, write_classifier


class TickClock:
    """A clock that only moves when the model runs: 3 ms per frame of a batch."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedModel(FakeModel):
    def __init__(self, clock: TickClock) -> None:
        super().__init__(2)
        self.clock = clock
        self.sizes: list[int] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.clock.now += 0.003 * batch.shape[0]
        self.sizes.append(batch.shape[0])
        return super().run(batch)


class InFlightModel(TimedModel):
    """A runtime that keeps four requests (OpenVINO's async mode): a static batch of one, frames run in flight."""

    in_flight = 4

    def __init__(self, clock: TickClock) -> None:
        super().__init__(clock)
        self.input_shape = (1, 1, 28, 28)
        self.each_sizes: list[int] = []

    def run_each(self, batches: Sequence[np.ndarray], every: bool = False) -> list[np.ndarray]:
        self.each_sizes.append(len(batches))
        return [self.run(b) for b in batches]


def in_flight_slot(tmp_path: Path, clock: TickClock | None = None) -> tuple[ModelSlot, InFlightModel]:
    model = InFlightModel(clock or TickClock())
    manifest = manifest_for(write_classifier(tmp_path / "m.onnx"))
    slot = ModelSlot()
    slot.swap(model, manifest, manifest.variants[0])
    return slot, model


def test_sizes_double_up_to_the_limit() -> None:
    assert candidate_sizes(1) == [1]
    assert candidate_sizes(8) == [1, 2, 4, 8]
    assert candidate_sizes(6) == [1, 2, 4, 6]


def test_the_largest_size_within_the_budget_wins_and_one_when_none_fits() -> None:
    assert choose_batch_size({1: 3.0, 2: 6.0, 4: 12.0}, budget_ms=10.0) == 2
    assert choose_batch_size({1: 3.0, 2: 6.0, 4: 12.0}, budget_ms=100.0) == 4
    assert choose_batch_size({1: 3.0, 2: 6.0}, budget_ms=1.0) == 1


def test_measure_times_each_size_on_inputs_of_the_models_shape(tmp_path: Path) -> None:
    clock = TickClock()
    model = TimedModel(clock)
    manifest = manifest_for(write_classifier(tmp_path / "m.onnx"))
    serving = prepare(model, manifest, manifest.variants[0], warm_up=False)
    latency = measure(serving, [1, 2, 4], runs=3, clock=clock)
    assert list(latency) == [1, 2, 4] and np.allclose(list(latency.values()), [3.0, 6.0, 12.0])
    assert sorted(set(model.sizes)) == [1, 2, 4]
    assert choose_batch_size(latency, 10.0) == 2


def run_four_streams(slot: ModelSlot, budget_ms: float | None) -> MultiStreamLoop:
    names = ["a", "b", "c", "d"]
    streams = [StreamConfig(name=n, source=SyntheticSource(), policy="fifo", stale_ms=None) for n in names]
    sources: dict[str, FrameSource] = {n: Synthetic("digits", height=28, width=28, frames=20) for n in names}
    loop = MultiStreamLoop(streams, sources, slot, FrameStats(), lambda r: None, threading.Event(), Health(),
                           max_batch=4, wait_s=0.05, budget_ms=budget_ms)
    loop.run()
    loop.stop()
    return loop


def test_a_budget_no_batch_fits_runs_frame_by_frame_and_a_roomy_one_batches(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "r").mkdir()
    tight = run_four_streams(slot_for(tmp_path / "t"), budget_ms=0.000001)
    assert tight.scheduler.max_size == 1 and tight.runner.batches == 0
    roomy = run_four_streams(slot_for(tmp_path / "r"), budget_ms=60_000.0)
    assert roomy.scheduler.max_size == 4 and roomy.runner.batches > 0


def test_frames_in_flight_are_measured_as_they_run_and_count_as_a_batch(tmp_path: Path) -> None:
    clock = TickClock()
    slot, model = in_flight_slot(tmp_path, clock)
    serving = slot.current
    assert serving is not None
    runner = BatchRunner()
    assert runner.can_batch(serving)  # no batch axis, but several requests
    latency = measure(serving, [1, 2, 4], runs=3, clock=clock, each=runner.in_flight(serving))
    assert np.allclose(list(latency.values()), [3.0, 6.0, 12.0])
    assert sorted(set(model.each_sizes)) == [1, 2, 4] and set(model.sizes) == {1}  # frames, never a stacked batch


def test_a_budget_limits_the_frames_in_flight_as_it_limits_a_batch(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "r").mkdir()
    tight = run_four_streams(in_flight_slot(tmp_path / "t")[0], budget_ms=0.000001)
    assert tight.scheduler.max_size == 1 and tight.runner.in_flight_batches == 0
    roomy = run_four_streams(in_flight_slot(tmp_path / "r")[0], budget_ms=60_000.0)
    assert roomy.scheduler.max_size == 4 and roomy.runner.in_flight_batches > 0
