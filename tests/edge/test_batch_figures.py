"""Batch sizes measured at install: timed with the runtime choice where the variant's batch axis is dynamic, kept
in the choice cache, and used by the multi-stream scheduler instead of timing the model again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.backends.factory import backend_chain
from edge.batch_figures import BATCH_SIZES, has_dynamic_batch, largest_batch_within, recorded_batch_ms
from edge.choice_cache import ChoiceCache
from edge.runtime_bench import ChosenModel
from edge.streams.batch_size import measure
from shared.object_store import LocalStore
from tests.edge.package_factory import KeyPair, make_package, new_keypair
from tests.edge.test_runtime_bench import CPU, _auto, _sync


def test_install_times_batch_sizes_and_a_restart_reads_them_from_the_choice_cache(tmp_path: Path) -> None:
    key: KeyPair = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "digits", 1, key, precisions=("fp32",))
    # ONNX Runtime only: which runtime wins the timing depends on the machine's load, and this test is about the
    # batch figures of a dynamic-batch session, not about the choice.
    sync = _sync(tmp_path, store, key, backend_chain(CPU, _auto(tmp_path, runtimes=["onnxruntime"]), max_batch=4))
    model, _ = sync.load(sync.install(1))
    assert isinstance(model, ChosenModel) and has_dynamic_batch(model.input_shape)
    assert sorted(model.batch_ms) == list(BATCH_SIZES) and all(ms > 0 for ms in model.batch_ms.values())
    assert model.largest_batch_within(1e9) == 8 and model.largest_batch_within(0.0) == 1
    cache = ChoiceCache(tmp_path / "cache" / "runtime-choice")
    assert cache.get_batches(model.result.cache_key) == model.batch_ms
    model.close()

    restarted = _sync(tmp_path, store, key, backend_chain(CPU, _auto(tmp_path, runtimes=["onnxruntime"]), max_batch=4))
    again, _ = restarted.load(restarted.install(1))
    assert again.result.cached and again.batch_ms == model.batch_ms  # the same figures: nothing timed again
    again.close()


def test_an_agent_serving_one_source_times_no_batch_sizes_at_install(tmp_path: Path) -> None:
    key: KeyPair = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "digits", 1, key, precisions=("fp32",))
    sync = _sync(tmp_path, store, key, backend_chain(CPU, _auto(tmp_path, runtimes=["onnxruntime"])))
    model, _ = sync.load(sync.install(1))
    assert isinstance(model, ChosenModel) and has_dynamic_batch(model.input_shape) and model.batch_ms == {}
    assert ChoiceCache(tmp_path / "cache" / "runtime-choice").get_batches(model.result.cache_key) == {}
    model.close()


def test_a_damaged_batch_record_is_a_miss_not_an_error(tmp_path: Path) -> None:
    cache = ChoiceCache(tmp_path)
    cache.put_batches("k1", {1: 0.5, 2: 0.9})
    assert cache.get_batches("k1") == {1: 0.5, 2: 0.9}
    cache.batches_path("k1").write_text("{not json")
    assert cache.get_batches("k1") == {} and cache.get_batches("missing") == {}


def test_the_largest_batch_within_a_budget_and_fixed_batch_models() -> None:
    figures = {1: 1.0, 2: 1.6, 4: 2.9, 8: 6.5}
    assert largest_batch_within(figures, 3.0) == 4
    assert largest_batch_within(figures, 0.5) == 1  # a frame is never refused
    assert largest_batch_within({}, 3.0) is None  # not measured: the scheduler measures itself
    assert has_dynamic_batch(("batch", 3, 224, 224)) and not has_dynamic_batch((1, 3, 224, 224))


class _Served:
    """What the scheduler's measure() reads from a served model; counts the runs it makes."""

    def __init__(self, batch_ms: dict[int, float]) -> None:
        self.model = type("Chosen", (), {"batch_ms": batch_ms})()
        self.preprocessor = type("Pre", (), {"output_shape": (1, 1, 8, 8)})()
        self.runs = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.runs += 1
        return np.zeros((len(batch), 10), np.float32)


def test_the_scheduler_uses_the_figures_measured_at_install_instead_of_timing_again() -> None:
    served = _Served({1: 1.0, 2: 1.6, 4: 2.9, 8: 6.5})
    assert measure(served, [1, 2, 4, 8]) == {1: 1.0, 2: 1.6, 4: 2.9, 8: 6.5}  # type: ignore[arg-type]
    assert served.runs == 0
    assert recorded_batch_ms(served.model, [1, 2, 4, 6]) is None  # a size not measured at install
    assert sorted(measure(served, [1, 2, 4, 6])) == [1, 2, 4, 6] and served.runs > 0  # type: ignore[arg-type]


@pytest.mark.parametrize("sizes", [[], [3]])
def test_recorded_figures_cover_only_what_was_measured(sizes: list[int]) -> None:
    assert recorded_batch_ms(type("M", (), {"batch_ms": {1: 1.0}})(), sizes) is None
