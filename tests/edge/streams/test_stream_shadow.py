"""The rollout shadow check on a multi-stream agent: frames of every stream are sampled by the same rule as the
single stream's (every Nth frame of a stream), run on the previous version and counted in the agreement figures."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.config import StreamConfig, SyntheticSource
from edge.frame_stats import FrameStats
from edge.hot_swap import ModelSlot, ServingModel
from edge.pipeline import FrameResult
from edge.shadow import ShadowCheck
from edge.sources.base import FrameSource
from edge.sources.synthetic import SyntheticSource as Synthetic
from edge.streams.server import MultiStreamLoop
from edge.supervise import Health
from tests.edge.streams.models import write_sensitive_classifier
from tests.edge.tiny_onnx import manifest_for

EVERY = 3
FRAMES = 12


def slot_for(directory: Path) -> ModelSlot:
    directory.mkdir(exist_ok=True)
    path = write_sensitive_classifier(directory / "m.onnx")
    manifest = manifest_for(path, shape=("batch", 1, 28, 28))
    slot = ModelSlot()
    slot.swap(OnnxRuntimeBackend().load(path, manifest.variants[0], manifest), manifest, manifest.variants[0])
    return slot


def stream(name: str) -> StreamConfig:
    return StreamConfig(name=name, source=SyntheticSource(width=28, height=28, fps=None), policy="fifo",
                        stale_ms=None)


def test_frames_of_every_stream_are_shadow_checked_every_nth_frame(tmp_path: Path) -> None:
    slot = slot_for(tmp_path)
    served = slot.current
    assert served is not None
    # The previous version is the served model's twin: every sampled frame agrees.
    previous: ServingModel | None = slot_for(tmp_path / "prev").current
    shadow = ShadowCheck(lambda: EVERY, lambda version: previous, Health(), queue_size=100)
    shadow.update(served.version)
    samples: list[FrameResult] = []
    sources: dict[str, FrameSource] = {name: Synthetic(pattern, height=28, width=28, frames=FRAMES)  # type: ignore[arg-type]
                                       for name, pattern in {"gate": "digits", "yard": "bars"}.items()}
    results: list[FrameResult] = []
    stop = threading.Event()
    server = MultiStreamLoop([stream("gate"), stream("yard")], sources, slot, FrameStats(), results.append, stop,
                             Health(), max_batch=2, wait_s=0.05, sample=shadow.wants, on_sample=samples.append)
    server.run()
    server.stop()
    assert len(results) == 2 * FRAMES
    # Frames 0, 3, 6 and 9 of each camera: the single stream's rule, per stream.
    assert Counter(s.stream for s in samples) == {"gate": FRAMES // EVERY, "yard": FRAMES // EVERY}
    assert all(s.index % EVERY == 0 and s.tensor is not None for s in samples)
    for sample in samples:
        shadow.compare(sample)
    assert shadow.metrics() == {"shadow_frames": 2.0 * FRAMES // EVERY, "shadow_agreement": 1.0}
