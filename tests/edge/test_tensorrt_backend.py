"""TensorRT without a GPU: the probe, the missing-import fallback, target matching, profiles and the engine cache.

No GPU exists where these tests run: building and executing real engines (tensorrt_build.build_engine with
real TensorRT, tensorrt_exec.TrtModel) is not exercised here.
"""

from __future__ import annotations

import enum
import logging
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from edge.backends import tensorrt_build, tensorrt_runtime
from edge.backends.base import Hardware
from edge.backends.factory import available_backends, make_backend, pick_backend
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.tensorrt_backend import (
    MAX_BATCH,
    TensorRTBackend,
    engine_cache_key,
    engine_file,
    timing_cache_file,
)
from edge.backends.tensorrt_build import profile_shapes
from edge.backends.tensorrt_runtime import probe_tensorrt
from edge.config import OnnxRuntimeConfig, TensorRTConfig
from edge.errors import BackendError
from shared.manifest import Variant
from tests.edge.tiny_onnx import variant_dict, write_classifier

GPU = Hardware(cuda=True, gpu_name="Orin", compute_capability="8.7", tensorrt_version="10.3.0.30")


class CudaError(enum.Enum):
    cudaSuccess = 0
    cudaErrorNoDevice = 100


def fake_modules(devices: int = 1) -> dict[str, ModuleType]:
    trt = ModuleType("tensorrt")
    trt.__version__ = "10.3.0.30"  # type: ignore[attr-defined]
    cudart = ModuleType("cuda.bindings.runtime")
    props = SimpleNamespace(name=b"Orin\x00\x00\x00", major=8, minor=7)
    ok = CudaError.cudaSuccess
    cudart.cudaError_t = CudaError  # type: ignore[attr-defined]
    cudart.cudaGetDeviceCount = lambda: (ok if devices else CudaError.cudaErrorNoDevice, devices)  # type: ignore[attr-defined]
    cudart.cudaGetDeviceProperties = lambda i: (ok, props)  # type: ignore[attr-defined]
    return {"tensorrt": trt, "cuda.bindings.runtime": cudart}


def importer_of(modules: dict[str, ModuleType]) -> Any:
    def importer(name: str) -> ModuleType:
        if name not in modules:
            raise ImportError(f"No module named {name!r}")
        return modules[name]

    return importer


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tensorrt_runtime, "_probe", None)


def variant(path: Path, precision: str = "fp32", **target: Any) -> Variant:
    return Variant.model_validate(variant_dict(path, precision, **target))


def engine_variant(tmp_path: Path, gpu: str = "Orin", trt: str = "10.3.0") -> Variant:
    path = tmp_path / "model.engine"
    path.write_bytes(b"serialized engine")
    return variant(path, "tensorrt", device="tensorrt", gpu_name=gpu, compute_capability="8.7", tensorrt_version=trt)


def test_missing_tensorrt_logs_one_line_and_falls_back_to_onnxruntime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails even where TensorRT is installed
    onnx_path = write_classifier(tmp_path / "m.onnx")
    with caplog.at_level(logging.DEBUG):
        backend = make_backend(TensorRTConfig())
        assert not backend.can_run(variant(onnx_path), GPU)
        assert not backend.can_run(engine_variant(tmp_path), GPU)
        backends = available_backends(GPU, TensorRTConfig())
        assert not TensorRTBackend().can_run(variant(onnx_path), GPU)
    lines = [r.getMessage() for r in caplog.records if "TensorRT" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("TensorRT unavailable: cannot import tensorrt") and lines[0].endswith(
        "; using ONNX Runtime"
    )
    assert [b.name for b in backends] == ["onnxruntime"]
    assert pick_backend(variant(onnx_path), GPU, backends) is backends[0]
    with pytest.raises(BackendError, match="TensorRT is unavailable"):
        backend.load(onnx_path, variant(onnx_path))


def test_missing_cuda_python_or_gpu_is_a_reason_too() -> None:
    modules = fake_modules()
    del modules["cuda.bindings.runtime"]
    runtime, reason = probe_tensorrt(importer_of(modules))
    assert runtime is None and reason is not None and "cuda-python is not installed" in reason
    runtime, reason = probe_tensorrt(importer_of(fake_modules(devices=0)))
    assert runtime is None and reason is not None and "no CUDA device" in reason


def test_probe_reads_the_gpu_identity() -> None:
    runtime, reason = probe_tensorrt(importer_of(fake_modules()))
    assert reason is None and runtime is not None
    assert (runtime.version, runtime.gpu_name, runtime.compute_capability) == ("10.3.0.30", "Orin", "8.7")


def test_prebuilt_engines_run_only_on_their_target(tmp_path: Path) -> None:
    backend = TensorRTBackend(importer=importer_of(fake_modules()))
    assert backend.available
    assert backend.can_run(engine_variant(tmp_path), GPU)
    assert not backend.can_run(engine_variant(tmp_path, gpu="Xavier"), GPU)
    assert not backend.can_run(engine_variant(tmp_path, trt="8.6.1"), GPU)
    with pytest.raises(BackendError, match="engine built for GPU 'Xavier'"):
        backend.load(tmp_path / "model.engine", engine_variant(tmp_path, gpu="Xavier"))


def test_onnx_variants_are_buildable_except_int8(tmp_path: Path) -> None:
    backend = TensorRTBackend(importer=importer_of(fake_modules()))
    path = write_classifier(tmp_path / "m.onnx")
    assert backend.can_run(variant(path, "fp32"), GPU)
    assert backend.can_run(variant(path, "fp16", device="cuda"), GPU)
    assert not backend.can_run(variant(path, "int8"), GPU)
    backends = available_backends(GPU, TensorRTConfig())
    assert [b.name for b in backends] == ["tensorrt", "onnxruntime"]


def test_no_tensorrt_probe_on_devices_without_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        backends = available_backends(Hardware(), None)
    assert [type(b) for b in backends] == [OnnxRuntimeBackend]
    assert "TensorRT" not in caplog.text
    assert [b.name for b in available_backends(Hardware(), OnnxRuntimeConfig(threads=2))] == ["onnxruntime"]


def test_cache_key_changes_with_every_input() -> None:
    base: dict[str, Any] = {"onnx_sha256": "a" * 64, "trt_version": "10.3.0", "gpu_name": "Orin"}
    key = engine_cache_key(**base, fp16=True, max_batch=16)
    assert key == engine_cache_key(**base, fp16=True, max_batch=16)
    others = [
        engine_cache_key(**{**base, "onnx_sha256": "b" * 64}, fp16=True, max_batch=16),
        engine_cache_key(**{**base, "trt_version": "10.4.0"}, fp16=True, max_batch=16),
        engine_cache_key(**{**base, "gpu_name": "Xavier"}, fp16=True, max_batch=16),
        engine_cache_key(**base, fp16=False, max_batch=16),
        engine_cache_key(**base, fp16=True, max_batch=8),
        engine_cache_key(**base, fp16=True, max_batch=16, opt_batch=4),
    ]
    assert len({key, *others}) == 7
    assert key == engine_cache_key(**base, fp16=True, max_batch=16, opt_batch=1)  # batch-1 engines keep their key
    assert engine_file(Path("c"), key) == Path("c") / f"{key}.engine"
    assert timing_cache_file(Path("c"), "10.3.0", "NVIDIA GeForce RTX 4090").name == (
        "timing-10.3.0-NVIDIA-GeForce-RTX-4090.cache"
    )


def test_engines_are_built_once_then_served_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[dict[str, Any]] = []

    def fake_build(trt: Any, onnx: bytes, **kw: Any) -> tuple[bytes, bytes]:
        builds.append(kw)
        return b"ENGINE-fp16=%d" % kw["fp16"], b"TIMING"

    monkeypatch.setattr(tensorrt_build, "build_engine", fake_build)
    cache = tmp_path / "engines"
    onnx_path = write_classifier(tmp_path / "m.onnx")
    v = variant(onnx_path)
    fp16 = TensorRTBackend(TensorRTConfig(engine_cache_dir=cache, fp16=True), importer=importer_of(fake_modules()))
    rt = fp16.runtime
    assert rt is not None
    assert fp16.engine_for(onnx_path, v, rt) == b"ENGINE-fp16=1"
    assert fp16.engine_for(onnx_path, v, rt) == b"ENGINE-fp16=1"
    assert len(builds) == 1 and builds[0]["timing_cache"] == b"" and builds[0]["max_batch"] == MAX_BATCH
    assert builds[0]["workspace_bytes"] == 1024 << 20
    fp32 = TensorRTBackend(TensorRTConfig(engine_cache_dir=cache, fp16=False), importer=importer_of(fake_modules()))
    assert fp32.engine_for(onnx_path, v, rt) == b"ENGINE-fp16=0"
    assert len(builds) == 2 and builds[1]["timing_cache"] == b"TIMING"  # the first build's tactics are reused
    assert sorted(p.suffix for p in cache.iterdir()) == [".cache", ".engine", ".engine"]


def test_an_onnx_file_that_changed_since_verification_is_not_built(tmp_path: Path) -> None:
    backend = TensorRTBackend(TensorRTConfig(engine_cache_dir=tmp_path / "c"), importer=importer_of(fake_modules()))
    onnx_path = write_classifier(tmp_path / "m.onnx")
    v = variant(onnx_path)
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    rt = backend.runtime
    assert rt is not None
    with pytest.raises(BackendError, match="differs from the manifest"):
        backend.engine_for(onnx_path, v, rt)


def test_optimization_profile_spans_batch_one_to_max() -> None:
    assert profile_shapes((-1, 3, 224, 224), 16) == ((1, 3, 224, 224), (1, 3, 224, 224), (16, 3, 224, 224))
    assert profile_shapes((-1, 1, 28, 28), max_batch=16, opt_batch=4)[1] == (4, 1, 28, 28)
    assert profile_shapes((1, 1, 28, 28), 16) == ((1, 1, 28, 28),) * 3
    assert profile_shapes((2, 3, 8, 8), 8) == ((2, 3, 8, 8),) * 3


def test_profiles_refuse_what_an_engine_cannot_take() -> None:
    with pytest.raises(BackendError, match="dynamic beyond the batch axis"):
        profile_shapes((-1, 3, -1, -1), 16)
    with pytest.raises(BackendError, match=r"opt batch 8 must lie in 1\.\.max batch 4"):
        profile_shapes((-1, 3, 8, 8), max_batch=4, opt_batch=8)
    with pytest.raises(BackendError, match="no dimensions"):
        profile_shapes((), 16)


def test_tensorrt_before_10_is_declined_with_the_reason() -> None:
    modules = fake_modules()
    modules["tensorrt"].__version__ = "8.6.1"  # type: ignore[attr-defined]
    runtime, reason = probe_tensorrt(importer_of(modules))
    assert runtime is None and reason == "TensorRT 8.6.1 is too old; engines need TensorRT 10 or newer"


def test_cuda_runtime_version_is_read_when_cuda_python_offers_it() -> None:
    modules = fake_modules()
    cudart = modules["cuda.bindings.runtime"]
    cudart.cudaRuntimeGetVersion = lambda: (CudaError.cudaSuccess, 12060)  # type: ignore[attr-defined]
    runtime, _ = probe_tensorrt(importer_of(modules))
    assert runtime is not None and runtime.cuda_version == "12.6"
    assert probe_tensorrt(importer_of(fake_modules()))[0].cuda_version is None  # type: ignore[union-attr]
