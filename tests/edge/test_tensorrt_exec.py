"""TrtModel's buffer and output handling against a fake TensorRT + cuda-python pair that moves real bytes.

No GPU exists where this runs: "device memory" is host memory owned by the fake cudart, and the fake engine computes
its outputs from the bytes it finds at the input's address. What this checks is our code around TensorRT: one
buffer per tensor, every output bound before execution, each output read back by name, chunking beyond the profile.
The real engine path (tensorrt_build + real TensorRT) runs only on a GPU machine.
"""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from edge.backends.tensorrt_exec import TrtModel
from edge.backends.tensorrt_runtime import TensorRTRuntime
from edge.errors import BackendError
from edge.task_decode import runner_for

MAX_BATCH = 4
K = 3  # boxes per image in the fake detector


class CudaError(enum.Enum):
    cudaSuccess = 0


class Mode(enum.Enum):
    INPUT = 0
    OUTPUT = 1


class FakeCudart:
    """cudaMalloc hands out host buffers; memcpy in either direction is a memmove between host addresses."""

    cudaError_t = CudaError
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self) -> None:
        self.buffers: dict[int, Any] = {}
        self.freed: list[int] = []

    def cudaStreamCreate(self) -> tuple[CudaError, int]:
        return CudaError.cudaSuccess, 7

    def cudaStreamDestroy(self, stream: int) -> tuple[CudaError]:
        return (CudaError.cudaSuccess,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[CudaError]:
        return (CudaError.cudaSuccess,)

    def cudaMalloc(self, nbytes: int) -> tuple[CudaError, int]:
        buf = ctypes.create_string_buffer(nbytes)
        self.buffers[ctypes.addressof(buf)] = buf
        return CudaError.cudaSuccess, ctypes.addressof(buf)

    def cudaFree(self, ptr: int) -> tuple[CudaError]:
        self.freed.append(ptr)
        self.buffers.pop(ptr, None)
        return (CudaError.cudaSuccess,)

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> tuple[CudaError]:
        ctypes.memmove(dst, src, nbytes)
        return (CudaError.cudaSuccess,)


def read(ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * n).from_address(ptr), dtype=dtype).reshape(shape)


class FakeContext:
    """A decoded detector: boxes [B, K, 4] = per-image mean + k, scores [B, K], class ids [B, K] int32."""

    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.batch = 0
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.batch = shape[0]
        return 1 <= shape[0] <= MAX_BATCH

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.batch, *self.engine.shapes[name][1:])

    def set_tensor_address(self, name: str, ptr: int) -> None:
        self.addresses[name] = ptr

    def execute_async_v3(self, stream: int) -> bool:
        missing = set(self.engine.shapes) - set(self.addresses)
        assert not missing, f"executed without an address for {missing}"
        x = read(self.addresses["images"], self.get_tensor_shape("images"), np.float32)
        mean = x.reshape(self.batch, -1).mean(axis=1)
        ks = np.arange(K, dtype=np.float32)
        outs = {
            "boxes": np.repeat((mean[:, None] + ks)[:, :, None], 4, axis=2).astype(np.float32),
            "scores": (0.9 - 0.1 * ks)[None, :].repeat(self.batch, 0).astype(np.float32),
            "class_ids": np.tile(np.arange(K, dtype=np.int32), (self.batch, 1)),
        }
        for name, value in outs.items():
            read(self.addresses[name], value.shape, value.dtype)[...] = value
        self.engine.runs += 1
        return True


class FakeEngine:
    def __init__(self) -> None:
        self.shapes = {"images": (-1, 1, 4, 4), "boxes": (-1, K, 4), "scores": (-1, K), "class_ids": (-1, K)}
        self.dtypes = {"images": "f32", "boxes": "f32", "scores": "f32", "class_ids": "i32"}
        self.num_io_tensors = len(self.shapes)
        self.runs = 0

    def get_tensor_name(self, i: int) -> str:
        return list(self.shapes)[i]

    def get_tensor_mode(self, name: str) -> Mode:
        return Mode.INPUT if name == "images" else Mode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shapes[name]

    def get_tensor_dtype(self, name: str) -> str:
        return self.dtypes[name]

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        return [(1, 1, 4, 4), (2, 1, 4, 4), (MAX_BATCH, 1, 4, 4)]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self)


def fake_runtime(engine: FakeEngine, cudart: FakeCudart) -> TensorRTRuntime:
    severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

    class ILogger:
        Severity = severity

        def __init__(self) -> None:
            pass

    trt = SimpleNamespace(
        ILogger=ILogger, TensorIOMode=Mode,
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=lambda data: engine),
        nptype=lambda d: {"f32": np.float32, "i32": np.int32}[d],
    )
    return TensorRTRuntime(trt=trt, cudart=cudart, version="10.3.0", gpu_name="Fake", compute_capability="8.7")


@pytest.fixture
def model() -> tuple[TrtModel, FakeEngine, FakeCudart]:
    engine, cudart = FakeEngine(), FakeCudart()
    return TrtModel(fake_runtime(engine, cudart), b"engine", "model.plan"), engine, cudart


def batch_of(n: int) -> np.ndarray:
    return np.stack([np.full((1, 4, 4), float(i), np.float32) for i in range(n)])


def test_a_decoded_detector_returns_every_output_by_name_with_its_own_values(
    model: tuple[TrtModel, FakeEngine, FakeCudart],
) -> None:
    trt_model, _, _ = model
    outs = trt_model.run_outputs(batch_of(2))
    assert set(outs) == {"boxes", "scores", "class_ids"}
    assert outs["boxes"].shape == (2, K, 4) and outs["scores"].shape == (2, K) and outs["class_ids"].shape == (2, K)
    assert outs["boxes"][1, 2, 0] == 1.0 + 2  # image 1's mean (1.0) + box index 2
    np.testing.assert_allclose(outs["scores"][0], [0.9, 0.8, 0.7], rtol=1e-6)
    assert outs["class_ids"].dtype == np.float32 and outs["class_ids"][1].tolist() == [0.0, 1.0, 2.0]


def test_run_gives_the_first_output_as_before(model: tuple[TrtModel, FakeEngine, FakeCudart]) -> None:
    trt_model, _, _ = model
    out = trt_model.run(batch_of(3))
    assert out.shape == (3, K, 4) and out[2, 0, 0] == 2.0


def test_batches_beyond_the_profile_run_in_chunks_joined_per_output(
    model: tuple[TrtModel, FakeEngine, FakeCudart],
) -> None:
    trt_model, engine, _ = model
    outs = trt_model.run_outputs(batch_of(MAX_BATCH + 2))
    assert engine.runs == 2
    assert outs["boxes"].shape == (MAX_BATCH + 2, K, 4) and outs["boxes"][MAX_BATCH + 1, 0, 0] == MAX_BATCH + 1
    assert outs["class_ids"].shape == (MAX_BATCH + 2, K)


def test_device_buffers_are_reused_and_all_freed_on_close(model: tuple[TrtModel, FakeEngine, FakeCudart]) -> None:
    trt_model, _, cudart = model
    trt_model.run_outputs(batch_of(4))
    held = set(cudart.buffers)
    trt_model.run_outputs(batch_of(2))  # smaller: the same buffers
    assert set(cudart.buffers) == held and len(held) == 4  # the input and three outputs
    trt_model.close()
    assert set(cudart.freed) == held
    with pytest.raises(BackendError, match="closed"):
        trt_model.run(batch_of(1))


def test_the_task_decoders_take_a_tensorrt_model_for_a_three_output_detector(
    model: tuple[TrtModel, FakeEngine, FakeCudart],
) -> None:
    trt_model, _, _ = model
    runner = runner_for(trt_model, 3, "detector", every=True)  # type: ignore[arg-type]
    assert set(runner(batch_of(1))) == {"boxes", "scores", "class_ids"}  # type: ignore[arg-type]
