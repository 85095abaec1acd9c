"""Running a freshly built engine on the build GPU (torch CUDA buffers), so it passes a gate before publishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cloud.errors import ExportError
from cloud.latency import LatencyStats, percentiles_ms, time_calls


class EngineRunner:
    """One deserialized engine with one execution context on torch's current CUDA stream."""

    def __init__(self, engine_path: Path) -> None:
        import tensorrt as trt
        import torch

        from cloud.tensorrt_build import make_logger

        self._torch = torch
        self._trt: Any = trt
        self._runtime = trt.Runtime(make_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self._engine is None:
            raise ExportError(f"{engine_path.name}: TensorRT cannot deserialize the engine it just built")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportError(f"{engine_path.name}: engine has inputs {inputs} and outputs {outputs}; need one each")
        self._input, self._output = inputs[0], outputs[0]
        self._max_batch = int(self._engine.get_tensor_profile_shape(self._input, 0)[2][0])
        self._context = self._engine.create_execution_context()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).cuda()
        if not self._context.set_input_shape(self._input, tuple(x.shape)):
            raise ExportError(f"input shape {tuple(x.shape)} is outside the engine's profile")
        out = torch.empty(tuple(self._context.get_tensor_shape(self._output)), dtype=torch.float32, device="cuda")
        self._context.set_tensor_address(self._input, x.data_ptr())
        self._context.set_tensor_address(self._output, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self._context.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execution failed")
        stream.synchronize()
        return np.asarray(out.cpu().numpy(), dtype=np.float32)

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Logits for all inputs, in chunks the optimization profile allows."""
        step = self._max_batch
        return np.concatenate([self._run(inputs[i : i + step]) for i in range(0, inputs.shape[0], step)])

    def latency(self, sample: np.ndarray, runs: int, warmup: int = 10) -> LatencyStats:
        """Batch-1 p50/p99 including the host-device copies a device would also pay."""
        x = sample[:1]
        p50, p99 = percentiles_ms(time_calls(lambda: self._run(x), runs, warmup))
        return LatencyStats(p50, p99, runs, threads=1)
