"""One loop serving several streams: batched results equal single-frame runs, a dead or hung stream is reconnected
while the others keep producing, and each stream's figures are its own."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.config import StreamConfig, SyntheticSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot
from edge.pipeline import FrameResult
from edge.sources.base import FrameSource
from edge.sources.synthetic import draw
from edge.streams.server import Bounds, MultiStreamLoop
from edge.supervise import Health
from shared.streams import STREAM_BY_NAME
from tests.edge.streams.models import HangingSource, SwitchableSource, write_sensitive_classifier
from tests.edge.tiny_onnx import manifest_for

PATTERNS = {"digits": "digits", "bars": "bars", "noise": "noise", "digits2": "digits"}


def slot_for(tmp_path: Path, batch: int | str = "batch") -> ModelSlot:
    path = write_sensitive_classifier(tmp_path / "m.onnx", batch=batch)
    manifest = manifest_for(path, shape=(batch, 1, 28, 28))
    model = OnnxRuntimeBackend().load(path, manifest.variants[0], manifest)
    slot = ModelSlot()
    slot.swap(model, manifest, manifest.variants[0])
    return slot


def stream(name: str, **kw: object) -> StreamConfig:
    kw.setdefault("policy", "fifo")
    kw.setdefault("stale_ms", None)
    return StreamConfig(name=name, source=SyntheticSource(width=28, height=28, fps=None), **kw)  # type: ignore[arg-type]


def loop(streams: list[StreamConfig], sources: dict[str, FrameSource], slot: ModelSlot,
         on_result: Callable[[FrameResult], None], stop: threading.Event, **kw: object) -> MultiStreamLoop:
    return MultiStreamLoop(streams, sources, slot, FrameStats(), on_result, stop, Health(), **kw)  # type: ignore[arg-type]


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


@pytest.mark.parametrize("batch", ["batch", 1])
def test_each_streams_result_equals_its_frames_single_frame_run(tmp_path: Path, batch: int | str,
                                                               stop: threading.Event) -> None:
    from edge.sources.synthetic import SyntheticSource as Synthetic

    slot = slot_for(tmp_path, batch)
    streams = [stream(name) for name in PATTERNS]
    sources: dict[str, FrameSource] = {
        name: Synthetic(pattern, height=28, width=28, frames=12)  # type: ignore[arg-type]
        for name, pattern in PATTERNS.items()
    }
    results: list[FrameResult] = []
    server = loop(streams, sources, slot, results.append, stop, max_batch=4, wait_s=0.05)
    server.run()
    server.stop()
    assert server.summary is not None and server.summary.reason == "end_of_stream"
    assert Counter(r.stream for r in results) == {name: 12 for name in PATTERNS}
    if batch == "batch":
        assert server.runner.batches > 0 and server.runner.batched_frames > server.runner.batches
    else:
        assert server.runner.batches == 0
    serving = slot.current
    assert serving is not None
    labels = set()
    for r in results:
        image = draw(PATTERNS[r.stream], r.index, 28, 28)  # type: ignore[arg-type]
        alone = serving.decoder.decode(serving.infer(serving.preprocessor(image).copy()), (28, 28), 3).prediction
        assert r.prediction is not None and alone is not None
        assert r.prediction.label == alone.label, f"{r.stream} frame {r.index}"
        assert [label for label, _ in r.prediction.top_k] == [label for label, _ in alone.top_k]
        np.testing.assert_allclose([s for _, s in r.prediction.top_k], [s for _, s in alone.top_k], rtol=1e-5,
                                   atol=1e-6)
        labels.add(r.prediction.label)
    assert len(labels) > 2, "the model must tell frames apart, or a mixed-up batch could not show"


def run_in_thread(server: MultiStreamLoop) -> threading.Thread:
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return thread


def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_an_unplugged_stream_reconnects_while_the_others_keep_producing(tmp_path: Path,
                                                                        stop: threading.Event) -> None:
    slot = slot_for(tmp_path)
    names = ["gate", "yard", "dock"]
    sources = {n: SwitchableSource() for n in names}
    streams = [StreamConfig(name=n, source=SyntheticSource(reconnect_backoff_s=0.05)) for n in names]
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(r: FrameResult) -> None:
        with lock:
            counts[r.stream] += 1

    def seen() -> Counter[str]:
        with lock:
            return Counter(counts)

    server = loop(streams, dict(sources), slot, count, stop, max_batch=4, wait_s=0.002)
    thread = run_in_thread(server)
    wait_until(lambda: all(seen()[n] >= 5 for n in names))
    sources["yard"].unplugged.set()
    wait_until(lambda: server.stream_figures()["yard"]["connected"] == 0.0)
    during = seen()
    wait_until(lambda: seen()["gate"] >= during["gate"] + 10 and seen()["dock"] >= during["dock"] + 10)
    assert seen()["yard"] <= during["yard"] + server.captures["yard"].ring.size, "no results from a dead camera"
    sources["yard"].unplugged.clear()
    wait_until(lambda: seen()["yard"] >= during["yard"] + 10)
    stop.set()
    thread.join(10)
    server.stop()
    figures = server.stream_figures()
    assert figures["yard"]["source_errors"] >= 2 and sources["yard"].opens >= 2
    assert figures["gate"]["source_errors"] == 0 and sources["gate"].opens == 1
    assert all(figures[n]["frames"] == seen()[n] for n in names)


def test_a_hung_stream_is_kicked_into_a_reconnect_and_the_others_never_wait_for_it(tmp_path: Path,
                                                                                   stop: threading.Event) -> None:
    slot = slot_for(tmp_path)
    hung = HangingSource()
    sources: dict[str, FrameSource] = {"live": SwitchableSource(), "hung": hung}
    streams = [StreamConfig(name="live", source=SyntheticSource()),
               StreamConfig(name="hung", source=SyntheticSource(reconnect_backoff_s=0.05), stall_s=0.3)]
    results: defaultdict[str, int] = defaultdict(int)
    server = loop(streams, sources, slot, lambda r: results.__setitem__(r.stream, results[r.stream] + 1), stop)
    thread = run_in_thread(server)
    wait_until(lambda: results["hung"] >= 5)
    stop.set()
    thread.join(10)
    server.stop()
    assert hung.opens >= 2 and server.stream_figures()["hung"]["source_errors"] >= 1
    assert results["live"] > 0


def test_per_stream_figures_count_each_streams_own_frames_skips_and_latency(tmp_path: Path,
                                                                            stop: threading.Event) -> None:
    from edge.sources.synthetic import SyntheticSource as Synthetic

    slot = slot_for(tmp_path)
    streams = [stream("all", ring_size=2), stream("newest", policy="latest", ring_size=1)]
    sources: dict[str, FrameSource] = {"all": Synthetic("digits", height=28, width=28, frames=30),
                                       "newest": Synthetic("bars", height=28, width=28, frames=3000)}
    results: list[FrameResult] = []
    server = loop(streams, sources, slot, results.append, stop, bounds=Bounds())
    server.run()
    server.stop()
    figures = server.stream_figures()
    assert set(figures) == {"all", "newest"}
    for name, values in figures.items():
        assert set(values) <= set(STREAM_BY_NAME)
        assert values["frames"] == sum(1 for r in results if r.stream == name)
        assert values["e2e_ms_p99"] >= values["e2e_ms_p50"] >= values["queue_age_ms_p50"] >= 0
    assert figures["all"]["frames"] == 30 and figures["all"]["skipped"] == 0
    # An unpaced source outruns inference: a 1-frame 'latest' ring overwrites, and every frame is accounted for.
    assert figures["newest"]["skipped"] > 0
    assert figures["newest"]["frames"] + figures["newest"]["skipped"] + figures["newest"]["stale"] == 3000
