"""Optional TensorRT engine build (TensorRT 10 API) for devices with the same GPU as the build machine."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.errors import ExportError
from edge.hardware import parse_nvidia_smi
from shared.manifest import Target

log = logging.getLogger(__name__)

# Same query as the agent's hardware probe (edge/hardware.py), so engine names match on the device.
NVIDIA_SMI_QUERY = ["--query-gpu=name,compute_cap", "--format=csv,noheader"]
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
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    def to_target(self) -> Target:
        """The manifest's Target for this engine."""
        return Target(
            device="tensorrt",
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            tensorrt_version=self.tensorrt_version,
            cuda_version=self.cuda_version,
        )


def _import_tensorrt() -> Any:
    import tensorrt  # optional extra: edgeferry[tensorrt]

    return tensorrt


def tensorrt_available() -> str | None:
    """None when an engine can be built and checked here; otherwise the reason it cannot."""
    try:
        trt = _import_tensorrt()
    except ImportError:
        return "the tensorrt package is not installed (pip install 'edgeferry[tensorrt]')"
    except OSError as exc:  # the wheel is present but its CUDA libraries are not
        return f"tensorrt is installed but cannot load its libraries: {exc}"
    if not str(getattr(trt, "__version__", "")).startswith(("10.", "11.")):
        return f"TensorRT {getattr(trt, '__version__', '?')} is too old; the engine build needs TensorRT 10"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch (needed to build and check the engine)"
    return None


def gpu_identity() -> tuple[str, str | None]:
    """GPU name and compute capability as the agent will see them (nvidia-smi), else as torch reports them."""
    exe = shutil.which("nvidia-smi")
    if exe is not None:
        try:
            out = subprocess.run(
                [exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=10, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            log.info("nvidia-smi failed (%s); taking the GPU name from torch", exc)
        else:
            found = parse_nvidia_smi(out)
            if found is not None:
                return found
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def cuda_version() -> str | None:
    """CUDA runtime version of this environment, as torch was built against it."""
    import torch

    return torch.version.cuda


def gpu_slug(gpu_name: str) -> str:
    """File-name-safe GPU name: 'NVIDIA GeForce RTX 4090' -> 'nvidia-geforce-rtx-4090'."""
    slug = _SLUG.sub("-", gpu_name.lower()).strip("-")[:64].strip("-")
    return slug or "gpu"


def engine_file_name(gpu_name: str) -> str:
    """The package file name of an engine built on this GPU."""
    return f"model.{gpu_slug(gpu_name)}.engine"


def profile_shapes(
    shape: tuple[int, ...], max_batch: int, opt_batch: int = 1
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) for the input: a dynamic batch (-1) spans 1..max_batch, tuned for opt_batch."""
    if not shape:
        raise ExportError("the ONNX input has no dimensions; TensorRT needs [batch, C, H, W]")
    if any(d < 0 for d in shape[1:]):
        raise ExportError(f"input shape {list(shape)} is dynamic beyond the batch axis; export it with fixed C, H, W")
    if shape[0] >= 0:
        return shape, shape, shape
    if not 1 <= opt_batch <= max_batch:
        raise ExportError(f"TensorRT opt batch {opt_batch} must lie in 1..max batch {max_batch}")
    rest = shape[1:]
    return (1, *rest), (opt_batch, *rest), (max_batch, *rest)


def make_logger(trt: Any) -> Any:
    """Forward TensorRT's messages to Python logging instead of stdout."""
    severity = trt.ILogger.Severity
    levels = {severity.INTERNAL_ERROR: logging.ERROR, severity.ERROR: logging.ERROR, severity.WARNING: logging.WARNING}

    class _Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, sev: Any, msg: str) -> None:
            log.log(levels.get(sev, logging.DEBUG), "TensorRT: %s", msg)

    return _Logger()


def build_engine(
    onnx_path: Path, out_path: Path, fp16: bool = True, workspace: int = 1 << 30, max_batch: int = 8
) -> EngineInfo:
    """Parse the ONNX file, add a batch profile, build and serialize the engine to out_path (atomically)."""
    why = tensorrt_available()
    if why is not None:
        raise ExportError(f"cannot build a TensorRT engine: {why}")
    trt = _import_tensorrt()
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'no detail given'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    shapes = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes = profile_shapes(tuple(tensor.shape), max_batch)
        profile.set_shape(tensor.name, *shapes)
    if shapes is None:
        raise ExportError(f"{onnx_path.name} has no inputs")
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build an engine (its log lines above say why)")
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    try:
        tmp.write_bytes(bytes(serialized))
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    name, capability = gpu_identity()
    info = EngineInfo(out_path, name, capability, str(trt.__version__), cuda_version(), fp16, shapes)
    log.info("tensorrt: built %s for %s (cc %s, TensorRT %s, fp16=%s)", out_path.name, name, capability,
             info.tensorrt_version, fp16)
    return info
