"""Running a deserialized TensorRT engine with cuda-python device buffers: the agent's runner and the cloud's gate."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

from edge.backends.tensorrt_build import make_logger
from edge.backends.tensorrt_runtime import TensorRTRuntime
from edge.errors import BackendError

log = logging.getLogger(__name__)


def _check(cudart: Any, result: tuple[Any, ...], what: str) -> Any:
    """cuda-python returns (error, *values); raise on error, return the value(s)."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        raise BackendError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else tuple(values)


class TrtModel:
    """One engine, one execution context, one stream; device buffers grow to the largest batch seen."""

    backend = "tensorrt"

    def __init__(self, rt: TensorRTRuntime, engine_bytes: bytes, file: str) -> None:
        trt, self._cudart = rt.trt, rt.cudart
        self._file = file
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise BackendError(f"{file}: TensorRT cannot deserialize the engine (built for another GPU or version?)")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise BackendError(f"{file}: engine has {len(inputs)} inputs and {len(outputs)} outputs; need 1 and >= 1")
        self.input_name: str = inputs[0]
        # Every output in the engine's order: run() returns the first, run_outputs() all of them by name (a
        # detector decoded in the graph has boxes, scores and class ids).
        self._outputs: list[str] = outputs
        shape = tuple(self._engine.get_tensor_shape(self.input_name))
        self.input_shape: tuple[int | str, ...] = tuple(d if d > 0 else "batch" for d in shape)
        self._in_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self.input_name)))
        self._out_dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in outputs}
        self._max_batch = self._profile_max_batch(shape)
        self._context = self._engine.create_execution_context()
        self._stream = _check(self._cudart, self._cudart.cudaStreamCreate(), "stream creation")
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._lock = threading.Lock()

    def _profile_max_batch(self, shape: tuple[int, ...]) -> int:
        if not shape or shape[0] > 0:
            return shape[0] if shape else 1
        return int(self._engine.get_tensor_profile_shape(self.input_name, 0)[2][0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output (a classifier's logits) as float32; batches beyond the profile run in chunks."""
        return self.run_outputs(batch, first_only=True)[self._outputs[0]]

    def run_outputs(self, batch: np.ndarray, first_only: bool = False) -> dict[str, np.ndarray]:
        """Every output by name as float32 (class ids too, as ONNX Runtime's runner gives them); batches beyond the
        engine's profile run in chunks whose outputs are joined along the batch axis."""
        names = self._outputs[:1] if first_only else self._outputs
        if batch.shape[0] <= self._max_batch:
            return self._run(batch, names)
        chunks = [self._run(batch[i : i + self._max_batch], names) for i in range(0, batch.shape[0], self._max_batch)]
        return {n: np.concatenate([c[n] for c in chunks]) for n in names}

    def _run(self, batch: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        host_in = np.ascontiguousarray(batch, dtype=self._in_dtype)
        with self._lock:
            ctx = self._context
            if ctx is None:
                raise BackendError(f"{self._file} was closed")
            if not ctx.set_input_shape(self.input_name, host_in.shape):
                raise BackendError(f"{self._file}: input shape {host_in.shape} is outside the engine's profile")
            h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            d_in = self._device(self.input_name, host_in.nbytes)
            _check(cudart, cudart.cudaMemcpyAsync(d_in, host_in.ctypes.data, host_in.nbytes, h2d, self._stream), "copy")
            ctx.set_tensor_address(self.input_name, d_in)
            # Every output needs an address to execute, also those the caller does not read back; only those read
            # get a host array (a detector's unread outputs can be megabytes per frame).
            host_out: dict[str, np.ndarray] = {}
            d_out: dict[str, int] = {}
            for name in self._outputs:
                shape = tuple(ctx.get_tensor_shape(name))
                d_out[name] = self._device(name, math.prod(shape) * self._out_dtypes[name].itemsize)
                ctx.set_tensor_address(name, d_out[name])
                if name in names:
                    host_out[name] = np.empty(shape, dtype=self._out_dtypes[name])
            if not ctx.execute_async_v3(int(self._stream)):
                raise BackendError(f"{self._file}: TensorRT execution failed")
            for name in names:
                out = host_out[name]
                _check(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, d_out[name], out.nbytes, d2h, self._stream),
                       "copy")
            _check(cudart, cudart.cudaStreamSynchronize(self._stream), "stream synchronize")
        return {name: host_out[name].astype(np.float32, copy=False) for name in names}

    def _device(self, name: str, nbytes: int) -> int:
        """A device buffer of at least nbytes for a tensor, reallocated only when a bigger batch arrives."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size >= nbytes:
            return ptr
        if ptr:
            _check(self._cudart, self._cudart.cudaFree(ptr), "free")
        ptr = int(_check(self._cudart, self._cudart.cudaMalloc(nbytes), "malloc"))
        self._buffers[name] = (ptr, nbytes)
        return ptr

    def close(self) -> None:
        """Free device buffers, the stream, the context and the engine."""
        with self._lock:
            if self._context is None:
                return
            for ptr, _ in self._buffers.values():
                self._cudart.cudaFree(ptr)
            self._buffers.clear()
            self._cudart.cudaStreamDestroy(self._stream)
            self._context = None
            self._engine = None
