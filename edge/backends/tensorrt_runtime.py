"""Whether TensorRT can run here, and on which GPU: one probe for the agent's backend and the cloud's engine gate.

tensorrt and cuda-python are imported lazily, so importing this module never needs either.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

Importer = Callable[[str], ModuleType]
# Engines are built and run through the TensorRT 10 API (explicit batch, named tensors, execute_async_v3).
MIN_TENSORRT_MAJOR = 10


@dataclass(frozen=True)
class TensorRTRuntime:
    """The imported modules and the GPU they will run on, as CUDA itself names it (what engines are matched on)."""

    trt: Any
    cudart: Any
    version: str
    gpu_name: str
    compute_capability: str
    cuda_version: str | None = None


@dataclass(frozen=True)
class _Probe:
    runtime: TensorRTRuntime | None
    reason: str | None


_probe: _Probe | None = None
_probe_lock = threading.Lock()


def _import_cudart(importer: Importer) -> Any:
    """cuda-python's runtime API: cuda.bindings.runtime (12.6+) or the older cuda.cudart."""
    try:
        return importer("cuda.bindings.runtime")
    except ImportError:
        return importer("cuda.cudart")


def _cuda_runtime_version(cudart: Any) -> str | None:
    """'12.6' from cudaRuntimeGetVersion's 12060, or None when it cannot be asked."""
    query = getattr(cudart, "cudaRuntimeGetVersion", None)
    if query is None:
        return None
    err, number = query()
    if err != cudart.cudaError_t.cudaSuccess:
        return None
    return f"{int(number) // 1000}.{int(number) % 1000 // 10}"


def probe_tensorrt(importer: Importer = importlib.import_module) -> tuple[TensorRTRuntime | None, str | None]:
    """(runtime, None) when TensorRT 10+, cuda-python and a GPU are all there, else (None, why not)."""
    try:
        trt = importer("tensorrt")
    except (ImportError, OSError) as exc:  # OSError: the wheel is there but libnvinfer is not
        return None, f"cannot import tensorrt ({exc}); install it with pip install 'edgeferry[tensorrt]'"
    version = str(getattr(trt, "__version__", "?"))
    major = re.match(r"\d+", version)
    if major is None or int(major.group()) < MIN_TENSORRT_MAJOR:
        return None, f"TensorRT {version} is too old; engines need TensorRT {MIN_TENSORRT_MAJOR} or newer"
    try:
        cudart = _import_cudart(importer)
    except (ImportError, OSError) as exc:
        return None, f"cuda-python is not installed ({exc}); install 'cuda-python' next to tensorrt"
    success = cudart.cudaError_t.cudaSuccess
    err, count = cudart.cudaGetDeviceCount()
    if err != success or count < 1:
        return None, f"no CUDA device is visible ({err})"
    err, prop = cudart.cudaGetDeviceProperties(0)
    if err != success:
        return None, f"cannot query the CUDA device ({err})"
    raw = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    gpu = raw.split("\0", 1)[0].strip()
    capability = f"{prop.major}.{prop.minor}"
    return TensorRTRuntime(trt, cudart, version, gpu, capability, _cuda_runtime_version(cudart)), None


def tensorrt_runtime(importer: Importer = importlib.import_module) -> TensorRTRuntime | None:
    """The process-wide probe result; logs a single line the first time TensorRT turns out to be unavailable."""
    global _probe
    with _probe_lock:
        if _probe is None:
            runtime, reason = probe_tensorrt(importer)
            _probe = _Probe(runtime, reason)
            if runtime is None:
                log.warning("TensorRT unavailable: %s; using ONNX Runtime", reason)
            else:
                log.info("TensorRT %s on %s (compute %s)", runtime.version, runtime.gpu_name,
                         runtime.compute_capability)
        return _probe.runtime
