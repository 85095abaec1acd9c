"""ONNX Runtime sessions set up the same way for verification, latency figures and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from cloud.errors import ExportError
from edge.backends.onnxruntime_backend import session_options as edge_session_options

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
# Everything onnxruntime's bindings raise; they do not share a base class below Exception.
ORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    v for v in vars(ort_state).values() if isinstance(v, type) and issubclass(v, Exception)
)
_PREDICT_BATCH = 64


def session_options(threads: int, spin: bool = True) -> ort.SessionOptions:
    """The device's own session recipe, so the latency and accuracy the cloud records are what devices reproduce."""
    return edge_session_options(threads, spin=spin)


def open_session(path: Path, threads: int = 1, provider: str = CPU, spin: bool = True) -> ort.InferenceSession:
    """A session on one provider; ExportError with ONNX Runtime's message when the model cannot load."""
    providers = [provider] if provider == CPU else [provider, CPU]
    try:
        return ort.InferenceSession(str(path), session_options(threads, spin), providers=providers)
    except ORT_ERRORS as exc:
        raise ExportError(f"ONNX Runtime cannot load {path.name}: {exc}") from exc


def predict(session: ort.InferenceSession, inputs: np.ndarray, batch: int = _PREDICT_BATCH) -> np.ndarray:
    """Logits for all inputs, run in batches; ExportError when the runtime fails."""
    name = session.get_inputs()[0].name
    data = np.ascontiguousarray(inputs, dtype=np.float32)
    try:
        out = [session.run(None, {name: data[i : i + batch]})[0] for i in range(0, data.shape[0], batch)]
    except ORT_ERRORS as exc:
        raise ExportError(f"ONNX Runtime failed while running the test split: {exc}") from exc
    return np.concatenate(out).astype(np.float32, copy=False)


def best_provider(prefer_cuda: bool) -> str:
    """CUDA where asked for and present (FP16 is meant for GPUs), else CPU."""
    return CUDA if prefer_cuda and CUDA in ort.get_available_providers() else CPU
