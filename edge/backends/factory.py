"""Backend construction from config, and the fallback order: the configured backend, then ONNX Runtime."""

from __future__ import annotations

from collections.abc import Sequence

from edge.backends.base import Hardware, InferenceBackend
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.tensorrt_backend import TensorRTBackend
from edge.config import BackendConfig
from edge.config import OnnxRuntimeBackend as OnnxRuntimeConfig
from edge.config import TensorRTBackend as TensorRTConfig
from shared.manifest import Variant


def make_backend(cfg: BackendConfig) -> InferenceBackend:
    """The backend the config's `type` names (TensorRT is probed lazily, on first use)."""
    if isinstance(cfg, OnnxRuntimeConfig):
        return OnnxRuntimeBackend(cfg)
    if isinstance(cfg, TensorRTConfig):
        return TensorRTBackend(cfg)
    raise TypeError(f"unknown backend config {type(cfg).__name__}")


def available_backends(hw: Hardware, cfg: BackendConfig | None = None) -> list[InferenceBackend]:
    """Usable backends, best first; ONNX Runtime is always there as the fallback.

    TensorRT is tried when configured, or with no config when the hardware probe found it; if it turns out
    unavailable it logs one line and is left out.
    """
    backends: list[InferenceBackend] = []
    wants_trt = isinstance(cfg, TensorRTConfig) or (cfg is None and hw.tensorrt_version is not None)
    if wants_trt:
        trt = TensorRTBackend(cfg if isinstance(cfg, TensorRTConfig) else None)
        if trt.available:
            backends.append(trt)
    backends.append(OnnxRuntimeBackend(cfg if isinstance(cfg, OnnxRuntimeConfig) else None))
    return backends


def pick_backend(variant: Variant, hw: Hardware, backends: Sequence[InferenceBackend]) -> InferenceBackend | None:
    """The first backend that can run the variant on this hardware."""
    return next((b for b in backends if b.can_run(variant, hw)), None)
