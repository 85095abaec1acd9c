"""TensorRT engines tuned for the batch the agent runs: an agent serving N streams builds (and caches) an engine
whose profile's opt batch is N, one source keeps batch 1. Against a fake TensorRT: no GPU runs these tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.backends import tensorrt_build
from edge.backends.factory import available_backends
from edge.backends.tensorrt_backend import MAX_BATCH, TensorRTBackend
from edge.backends.tensorrt_runtime import tensorrt_runtime
from edge.config import AutoBackendConfig, TensorRTConfig
from tests.edge.test_tensorrt_backend import GPU, fake_modules, fresh_probe, importer_of, variant  # noqa: F401
from tests.edge.tiny_onnx import write_classifier


def backend(cache: Path, max_batch: int) -> TensorRTBackend:
    return TensorRTBackend(TensorRTConfig(engine_cache_dir=cache), importer=importer_of(fake_modules()),
                           max_batch=max_batch)


def test_the_engine_is_tuned_for_the_batch_of_the_served_streams_and_cached_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[dict[str, Any]] = []

    def fake_build(trt: Any, onnx: bytes, **kw: Any) -> tuple[bytes, bytes]:
        builds.append(kw)
        return b"ENGINE-opt=%d" % kw["opt_batch"], b"TIMING"

    monkeypatch.setattr(tensorrt_build, "build_engine", fake_build)
    cache = tmp_path / "engines"
    onnx_path = write_classifier(tmp_path / "m.onnx")
    v = variant(onnx_path)
    one, four = backend(cache, 1), backend(cache, 4)
    rt = one.runtime
    assert rt is not None
    assert one.engine_for(onnx_path, v, rt) == b"ENGINE-opt=1"
    assert four.engine_for(onnx_path, v, rt) == b"ENGINE-opt=4"  # not the batch-1 engine from the cache
    assert four.engine_for(onnx_path, v, rt) == b"ENGINE-opt=4"
    assert [(b["opt_batch"], b["max_batch"]) for b in builds] == [(1, MAX_BATCH), (4, MAX_BATCH)]
    assert len(list(cache.glob("*.engine"))) == 2
    assert backend(cache, 64).opt_batch == MAX_BATCH  # more streams than the profile holds: tuned for its top


def test_the_chain_tells_tensorrt_how_many_frames_a_batch_holds() -> None:
    assert tensorrt_runtime(importer_of(fake_modules())) is not None  # the process-wide probe finds the fake
    for cfg in (TensorRTConfig(), AutoBackendConfig(runtimes=["tensorrt"])):
        trt = [b for b in available_backends(GPU, cfg, max_batch=4) if isinstance(b, TensorRTBackend)]
        assert [b.opt_batch for b in trt] == [4]
