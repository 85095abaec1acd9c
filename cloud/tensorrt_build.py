"""The cloud's TensorRT step: the device's own probe and builder (edge.backends), plus the package's engine entry.

An engine built here runs only on the same GPU model and TensorRT release; the manifest records both as the
GPU and version CUDA and TensorRT report them, which is exactly what the agent's probe matches against.
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from cloud.errors import ExportError
from edge.backends import tensorrt_build
from edge.backends.tensorrt_runtime import Importer, TensorRTRuntime, probe_tensorrt
from shared.errors import EdgeferryError
from shared.manifest import Target
from shared.object_store import atomic_write

log = logging.getLogger(__name__)

_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class EngineInfo:
    """What an engine was built on and for; it runs only on the same GPU model and TensorRT release."""

    path: Path
    gpu_name: str
    compute_capability: str | None
    tensorrt_version: str
    cuda_version: str | None
    fp16: bool

    def to_target(self) -> Target:
        """The manifest's Target for this engine."""
        return Target(
            device="tensorrt",
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            tensorrt_version=self.tensorrt_version,
            cuda_version=self.cuda_version,
        )


def tensorrt_available(importer: Importer = importlib.import_module) -> str | None:
    """None when an engine can be built and checked here; otherwise the reason it cannot."""
    return probe_tensorrt(importer)[1]


def gpu_slug(gpu_name: str) -> str:
    """File-name-safe GPU name: 'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    slug = _SLUG.sub("-", gpu_name.lower()).strip("-")[:64].strip("-")
    return slug or "gpu"


def engine_file_name(gpu_name: str) -> str:
    """The package file name of an engine built on this GPU."""
    return f"model.{gpu_slug(gpu_name)}.engine"


def build_engine(
    onnx_path: Path,
    out_path: Path,
    runtime: TensorRTRuntime | None = None,
    *,
    fp16: bool = True,
    workspace: int = 1 << 30,
    max_batch: int = 8,
) -> EngineInfo:
    """Build with the device's builder and write the engine to out_path atomically; ExportError writes nothing."""
    if runtime is None:
        runtime, why = probe_tensorrt()
        if runtime is None:
            raise ExportError(f"cannot build a TensorRT engine: {why}")
    try:
        onnx = onnx_path.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {onnx_path}: {exc.strerror}") from exc
    try:
        engine, _ = tensorrt_build.build_engine(
            runtime.trt, onnx, workspace_bytes=workspace, fp16=fp16, max_batch=max_batch
        )
    except EdgeferryError as exc:  # edge's BackendError; cloud imports only edge.backends and edge.hardware
        raise ExportError(str(exc)) from exc
    atomic_write(out_path, engine)
    info = EngineInfo(out_path, runtime.gpu_name, runtime.compute_capability, runtime.version,
                      runtime.cuda_version, fp16)
    log.info("tensorrt: built %s for %s (cc %s, TensorRT %s, fp16=%s)", out_path.name, info.gpu_name,
             info.compute_capability, info.tensorrt_version, fp16)
    return info
