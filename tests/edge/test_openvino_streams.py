"""OpenVINO serving several streams: a dynamic batch axis (timed at install like ONNX Runtime's),
or async infer requests with frames of different streams in flight; each frame's output is its single-frame run's."""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from edge.agent import Agent
from edge.backends.base import Hardware
from edge.backends.factory import backend_chain
from edge.backends.openvino_backend import OpenVINOBackend, OvModel
from edge.batch_figures import BATCH_SIZES, has_dynamic_batch
from edge.config import AgentConfig, AutoBackendConfig, OpenVINOConfig, StreamConfig, SyntheticSource
from edge.errors import BackendError
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot
from edge.pipeline import FrameResult
from edge.runtime_bench import ChosenModel, time_batch_sizes
from edge.runtime_choice import ChoiceSettings
from edge.sources.base import FrameSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.sources.synthetic import draw
from edge.streams.batch_infer import BatchRunner
from edge.streams.server import MultiStreamLoop
from edge.supervise import Health
from shared.object_store import LocalStore
from tests.edge.package_factory import make_package, new_keypair
from tests.edge.streams.models import write_sensitive_classifier
from tests.edge.test_runtime_bench import _sync
from tests.edge.tiny_onnx import manifest_for

CPU = Hardware(cpu_features=frozenset({"sse2", "sse4_2", "avx2"}))
PATTERNS = {"digits": "digits", "bars": "bars", "noise": "noise", "digits2": "digits"}


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (1, 1, 28, 28)).astype(np.float32) for _ in range(n)]


def load(tmp_path: Path, *, max_batch: int = 1, mode: str = "batch") -> OvModel:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_sensitive_classifier(tmp_path / "m.onnx")
    manifest = manifest_for(path, shape=("batch", 1, 28, 28))
    cfg = OpenVINOConfig(threads=1, cache_dir=tmp_path / "ov-cache", streams_mode=mode)  # type: ignore[arg-type]
    model = OpenVINOBackend(cfg, max_batch=max_batch).load(path, manifest.variants[0], manifest)
    assert isinstance(model, OvModel)
    return model


def test_one_stream_keeps_the_static_batch_of_one(tmp_path: Path) -> None:
    model = load(tmp_path)
    assert model.input_shape == (1, 1, 28, 28) and model.in_flight == 1
    model.close()


def test_several_streams_batched_keep_the_dynamic_batch_axis(tmp_path: Path) -> None:
    single = load(tmp_path / "one")
    model = load(tmp_path / "four", max_batch=4)
    assert has_dynamic_batch(model.input_shape) and model.input_shape[1:] == (1, 28, 28)
    xs = frames(4)
    batched = model.run(np.concatenate(xs))
    assert batched.shape == (4, 10)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(batched[i : i + 1], single.run(x), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(model.run(x), single.run(x), rtol=1e-5, atol=1e-5)  # batch 1 on the same model
    model.close()
    single.close()


def test_install_times_openvino_batch_sizes_when_it_serves_several_streams(tmp_path: Path) -> None:
    model = load(tmp_path, max_batch=max(BATCH_SIZES))
    figures = time_batch_sizes(model, frames(1)[0], ChoiceSettings(runs=3, warmup=1, budget_s=5.0))
    assert sorted(figures) == list(BATCH_SIZES) and all(ms > 0 for ms in figures.values())
    model.close()


def test_async_requests_keep_frames_in_flight_and_each_gets_its_single_frame_output(tmp_path: Path) -> None:
    single = load(tmp_path / "one")
    model = load(tmp_path / "async", max_batch=4, mode="async")
    assert model.input_shape == (1, 1, 28, 28) and model.in_flight == 4
    xs = frames(7, seed=3)  # more frames than requests: the queue waits for a free one
    for outs in (model.run_each(xs), model.run_each(xs, every=True)):
        assert len(outs) == 7
        for x, out in zip(xs, outs, strict=True):
            got = out if isinstance(out, np.ndarray) else next(iter(out.values()))
            np.testing.assert_allclose(got, single.run(x), rtol=1e-5, atol=1e-5)
    model.close()
    single.close()
    with pytest.raises(BackendError, match="closed"):
        model.run_each(xs)


def test_a_model_compiled_for_one_request_refuses_frames_in_flight(tmp_path: Path) -> None:
    model = load(tmp_path, max_batch=4)  # 'batch' mode: one request, a dynamic batch axis
    assert model.in_flight == 1
    with pytest.raises(BackendError, match="one request"):
        model.run_each(frames(2))
    model.close()


def test_async_mode_on_an_openvino_without_async_requests_is_refused_in_one_line(tmp_path: Path) -> None:
    real = importlib.import_module("openvino")
    old = ModuleType("openvino")  # Core and its version, but no AsyncInferQueue
    old.Core = real.Core  # type: ignore[attr-defined]
    old.get_version = real.get_version  # type: ignore[attr-defined]
    path = write_sensitive_classifier(tmp_path / "m.onnx")
    manifest = manifest_for(path, shape=("batch", 1, 28, 28))
    cfg = OpenVINOConfig(threads=1, cache_dir=tmp_path / "ov-cache", streams_mode="async")
    backend = OpenVINOBackend(cfg, importer=lambda name: old, max_batch=4)
    with pytest.raises(BackendError, match=r"AsyncInferQueue.*streams_mode") as refused:
        backend.load(path, manifest.variants[0], manifest)
    assert "\n" not in str(refused.value)
    one = OpenVINOBackend(cfg, importer=lambda name: old).load(path, manifest.variants[0], manifest)  # one source
    assert isinstance(one, OvModel) and one.in_flight == 1
    one.close()


def test_the_chain_tells_openvino_how_many_frames_a_batch_holds(tmp_path: Path) -> None:
    cfg = OpenVINOConfig(cache_dir=tmp_path / "ov")
    for chain_cfg in (cfg, AutoBackendConfig(runtimes=["openvino"], openvino=cfg)):
        chain = backend_chain(CPU, chain_cfg, max_batch=4)
        ov = [b for b in chain.backends if isinstance(b, OpenVINOBackend)]
        assert [b.max_batch for b in ov] == [4]
    plain = [b for b in backend_chain(CPU, cfg).backends if isinstance(b, OpenVINOBackend)]
    assert [b.max_batch for b in plain] == [1]


def slot_with(model: OvModel, tmp_path: Path) -> ModelSlot:
    manifest = manifest_for(tmp_path / "m.onnx", shape=("batch", 1, 28, 28))
    slot = ModelSlot()
    slot.swap(model, manifest, manifest.variants[0])
    return slot


@pytest.mark.parametrize("mode", ["batch", "async"])
def test_each_streams_result_equals_its_frames_single_frame_run_on_openvino(tmp_path: Path, mode: str) -> None:
    model = load(tmp_path, max_batch=4, mode=mode)
    slot = slot_with(model, tmp_path)
    streams = [StreamConfig(name=n, source=SyntheticSource(width=28, height=28, fps=None), policy="fifo",
                            stale_ms=None) for n in PATTERNS]
    sources: dict[str, FrameSource] = {
        name: Synthetic(pattern, height=28, width=28, frames=12)  # type: ignore[arg-type]
        for name, pattern in PATTERNS.items()
    }
    results: list[FrameResult] = []
    stop = threading.Event()
    server = MultiStreamLoop(streams, sources, slot, FrameStats(), results.append, stop, Health(), max_batch=4,
                             wait_s=0.05)
    try:
        server.run()
    finally:
        stop.set()
        server.stop()
    assert Counter(r.stream for r in results) == {name: 12 for name in PATTERNS}
    runner = server.runner
    assert runner.batched_frames > runner.batches > 0  # several streams' frames went through together
    assert (runner.in_flight_batches > 0) == (mode == "async")
    single = load(tmp_path / "single")
    serving = slot.current
    assert serving is not None
    labels = set()
    for r in results:
        image = draw(PATTERNS[r.stream], r.index, 28, 28)  # type: ignore[arg-type]
        alone = serving.decoder.decode(single.run(serving.preprocessor(image).copy()), (28, 28), 3).prediction
        assert r.prediction is not None and alone is not None
        assert [label for label, _ in r.prediction.top_k] == [label for label, _ in alone.top_k], r.stream
        np.testing.assert_allclose([s for _, s in r.prediction.top_k], [s for _, s in alone.top_k], rtol=1e-5,
                                   atol=1e-5)
        labels.add(r.prediction.label)
    assert len(labels) > 2, "the model must tell frames apart, or a mixed-up batch could not show"
    single.close()


def test_async_frames_that_fail_run_one_by_one_from_then_on(tmp_path: Path) -> None:
    model = load(tmp_path, max_batch=4, mode="async")
    slot = slot_with(model, tmp_path)
    serving = slot.current
    assert serving is not None
    runner = BatchRunner()
    wrong = [np.zeros((1, 1, 28, 28), np.float32), np.zeros((1, 3, 28, 28), np.float32)]
    fresh = BatchRunner()
    fresh.run(serving, frames(2))
    assert fresh.in_flight_batches == 1
    with pytest.raises(BackendError):
        runner.run(serving, wrong)  # frame by frame after the in-flight run failed: the wrong frame fails alone
    runner.run(serving, frames(2))
    assert runner.in_flight_batches == 0
    model.close()


def test_an_openvino_install_serving_several_streams_times_batch_sizes_like_onnx_runtime(tmp_path: Path) -> None:
    key = new_keypair()
    store = LocalStore(tmp_path / "store")
    make_package(store, "digits", 1, key, precisions=("fp32",))
    cfg = OpenVINOConfig(threads=1, cache_dir=tmp_path / "ov-cache")
    sync = _sync(tmp_path, store, key, backend_chain(CPU, cfg, benchmark_on_install=True, max_batch=8))
    model, _ = sync.load(sync.install(1))
    assert isinstance(model, ChosenModel) and model.backend == "openvino"
    assert sorted(model.batch_ms) == list(BATCH_SIZES)  # one source (max_batch 1) would give {}: a static batch
    model.close()


def agent_with(tmp_path: Path, **extra: object) -> Agent:
    tmp_path.mkdir(parents=True, exist_ok=True)
    pub = tmp_path / "key.pub"
    pub.write_bytes(new_keypair().public.public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    tree = {
        "device": {"fleet": "t", "device_id": "ov-streams"},
        "sync": {"model": "digits", "store": {"uri": str(tmp_path / "store")}, "cache_dir": str(tmp_path / "c"),
                 "trusted_keys": [str(pub)]},
        "backend": {"type": "openvino", "cache_dir": str(tmp_path / "ov")},
        "mqtt": {"enabled": False},
        **extra,
    }
    return Agent(AgentConfig.model_validate(tree), hardware=CPU)


def test_the_agent_tells_openvino_its_batch_limit_only_when_it_serves_streams(tmp_path: Path) -> None:
    cam = {"type": "synthetic", "width": 28, "height": 28}
    one = agent_with(tmp_path / "one", source=cam)
    many = agent_with(tmp_path / "many", streams=[{"name": n, "source": cam} for n in ("a", "b", "c")],
                      batching={"max_size": 3})
    try:
        for agent, want in ((one, 1), (many, 3)):
            assert [b.max_batch for b in agent.backend.backends if isinstance(b, OpenVINOBackend)] == [want]
    finally:
        one.stop()
        many.stop()
