"""Backend construction from config: `auto` puts every usable runtime in the chain; a named type forces one.

ONNX Runtime always closes the chain, so a forced runtime that turns out unusable here (one log line) still
leaves a model that loads.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from edge.backends.base import Hardware, InferenceBackend
from edge.backends.capabilities import ONNXRUNTIME, OPENVINO, TENSORRT, isa_unfit
from edge.backends.chain import BackendChain, pick_backend
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.openvino_backend import OpenVINOBackend
from edge.backends.tensorrt_backend import TensorRTBackend
from edge.config import AutoBackendConfig, BackendConfig, OnnxRuntimeConfig, OpenVINOConfig, TensorRTConfig
from edge.runtime_choice import ChoiceSettings

log = logging.getLogger(__name__)
_Threaded = TypeVar("_Threaded", OnnxRuntimeConfig, OpenVINOConfig)

__all__ = ["available_backends", "backend_chain", "choice_settings", "make_backend", "pick_backend"]


def make_backend(cfg: OnnxRuntimeConfig | OpenVINOConfig | TensorRTConfig) -> InferenceBackend:
    """The one backend a forced config names (TensorRT and OpenVINO are probed lazily, on first use)."""
    if isinstance(cfg, OnnxRuntimeConfig):
        return OnnxRuntimeBackend(cfg)
    if isinstance(cfg, OpenVINOConfig):
        return OpenVINOBackend(cfg)
    if isinstance(cfg, TensorRTConfig):
        return TensorRTBackend(cfg)
    raise TypeError(f"unknown backend config {type(cfg).__name__}")


def _with_threads(cfg: _Threaded, threads: int | None) -> _Threaded:
    return cfg if threads is None or cfg.threads is not None else cfg.model_copy(update={"threads": threads})


def _usable(runtime: str, backend: InferenceBackend, hw: Hardware) -> bool:
    why = isa_unfit(runtime, hw)
    if why is not None:
        log.info("%s skipped: %s", runtime, why)
        return False
    if isinstance(backend, TensorRTBackend | OpenVINOBackend):
        return backend.available  # logs its own one line when not
    return True


def _auto(hw: Hardware, cfg: AutoBackendConfig, max_batch: int = 1) -> list[InferenceBackend]:
    backends: list[InferenceBackend] = []
    for runtime in dict.fromkeys(cfg.runtimes):
        if runtime == TENSORRT:
            if hw.tensorrt_version is None:
                log.debug("tensorrt skipped: the hardware probe found no TensorRT")
                continue
            candidate: InferenceBackend = TensorRTBackend(cfg.tensorrt, max_batch=max_batch)
        elif runtime == OPENVINO:
            candidate = OpenVINOBackend(_with_threads(cfg.openvino, cfg.threads), max_batch=max_batch)
        else:
            candidate = OnnxRuntimeBackend(_with_threads(cfg.onnxruntime, cfg.threads), max_batch=max_batch)
        if _usable(runtime, candidate, hw):
            backends.append(candidate)
    if not any(b.name == ONNXRUNTIME for b in backends):
        backends.append(OnnxRuntimeBackend(_with_threads(cfg.onnxruntime, cfg.threads), max_batch=max_batch))
    return backends


def available_backends(
    hw: Hardware, cfg: BackendConfig | None = None, *, max_batch: int = 1
) -> list[InferenceBackend]:
    """Usable backends, best first; ONNX Runtime is always there as the fallback.

    `max_batch`: the most frames run together (batching.max_size where the agent serves `streams:`), for runtimes
    that compile a model for its batch sizes (OpenVINO's batch axis, TensorRT's opt batch) and for ONNX Runtime's
    idle workers (they sleep rather than spin when several streams are batched).

    `auto`: every runtime it lists that is installed and usable here. A forced TensorRT or OpenVINO that turns
    out unavailable logs one line and is left out. No config: TensorRT when the hardware probe found it, then ORT.
    """
    if isinstance(cfg, AutoBackendConfig):
        return _auto(hw, cfg, max_batch)
    backends: list[InferenceBackend] = []
    wants_trt = isinstance(cfg, TensorRTConfig) or (cfg is None and hw.tensorrt_version is not None)
    if wants_trt:
        trt = TensorRTBackend(cfg if isinstance(cfg, TensorRTConfig) else None, max_batch=max_batch)
        if trt.available:
            backends.append(trt)
    if isinstance(cfg, OpenVINOConfig):
        ov = OpenVINOBackend(cfg, max_batch=max_batch)
        if _usable(OPENVINO, ov, hw):
            backends.append(ov)
    backends.append(OnnxRuntimeBackend(cfg if isinstance(cfg, OnnxRuntimeConfig) else None, max_batch=max_batch))
    return backends


def choice_settings(
    cfg: BackendConfig | None, *, benchmark_on_install: bool = False, max_batch: int = 1
) -> ChoiceSettings:
    """How the runtime is chosen: `auto` measures unless told not to; a forced runtime only with
    sync.benchmark_on_install (then among its own variants and hints). Batch sizes are timed with the choice only
    where the agent batches streams (max_batch > 1)."""
    batches = max_batch > 1
    if isinstance(cfg, AutoBackendConfig):
        return ChoiceSettings(
            measure=cfg.measure or benchmark_on_install,
            hint_min_agreement=cfg.hint_min_agreement,
            runs=cfg.bench_runs,
            budget_s=cfg.bench_budget_s,
            batch_sizes=batches,
        )
    forced = None if cfg is None else cfg.type
    return ChoiceSettings(measure=benchmark_on_install, forced_backend=forced, batch_sizes=batches)


def backend_chain(
    hw: Hardware, cfg: BackendConfig | None, *, benchmark_on_install: bool = False, max_batch: int = 1
) -> BackendChain:
    """The chain the agent hands to model sync, carrying how the choice is made and how many frames run together."""
    return BackendChain(
        available_backends(hw, cfg, max_batch=max_batch),
        hw,
        choice_settings(cfg, benchmark_on_install=benchmark_on_install, max_batch=max_batch),
    )
