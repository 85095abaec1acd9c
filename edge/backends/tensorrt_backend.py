"""TensorRT engines: a matching prebuilt engine, or one built on the device from the ONNX and cached.

The probe (tensorrt_runtime), the builder (tensorrt_build) and the runner (tensorrt_exec) are the modules the
cloud's engine gate uses too. tensorrt and cuda-python are imported lazily; without them (or without a GPU) the
backend says so in one log line and declines every variant, so the agent falls back to ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import logging
import re
from pathlib import Path

from edge.backends import tensorrt_build
from edge.backends.base import Hardware, LoadedModel
from edge.backends.tensorrt_exec import TrtModel
from edge.backends.tensorrt_runtime import Importer, TensorRTRuntime, tensorrt_runtime
from edge.config import TensorRTConfig
from edge.errors import BackendError
from edge.variant_select import engine_matches
from shared.integrity import sha256_file
from shared.manifest import Variant
from shared.object_store import atomic_write

log = logging.getLogger(__name__)

# Largest batch an on-device engine accepts; bigger batches (golden smoke tests) run in chunks.
MAX_BATCH = 16
# Precisions built on the device from an ONNX file; int8 needs calibration data we do not ship to devices.
BUILDABLE = frozenset({"fp32", "fp16"})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def engine_cache_key(
    onnx_sha256: str, trt_version: str, gpu_name: str, *, fp16: bool, max_batch: int, opt_batch: int = 1
) -> str:
    """Names an engine built from these exact inputs; any change (model, TensorRT, GPU, flags) misses the cache."""
    spec: dict[str, object] = {
        "onnx": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "fp16": fp16, "max_batch": max_batch
    }
    if opt_batch != 1:  # engines tuned for batch 1 keep the key they were cached under before opt batches varied
        spec["opt_batch"] = opt_batch
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def engine_file(cache_dir: Path, key: str) -> Path:
    """Where a cached engine lives."""
    return cache_dir / f"{key}.engine"


def timing_cache_file(cache_dir: Path, trt_version: str, gpu_name: str) -> Path:
    """Per TensorRT version and GPU: tactic timings are only valid there."""
    return cache_dir / f"timing-{_slug(trt_version)}-{_slug(gpu_name)}.cache"


def runtime_hardware(hw: Hardware, rt: TensorRTRuntime) -> Hardware:
    """hw with the GPU and TensorRT identity the runtime itself reports (it is what the engine must match)."""
    return dataclasses.replace(
        hw, cuda=True, gpu_name=rt.gpu_name, compute_capability=rt.compute_capability, tensorrt_version=rt.version
    )


class TensorRTBackend:
    """Runs engines; builds them from fp32/fp16 ONNX variants when no matching prebuilt engine exists.

    `max_batch`: the most frames the agent runs together (batching.max_size serving `streams:`, else 1); engines
    built here span batches 1..MAX_BATCH and are tuned for that many (the profile's opt batch)."""

    name = "tensorrt"

    def __init__(
        self, cfg: TensorRTConfig | None = None, importer: Importer = importlib.import_module, *, max_batch: int = 1
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"a batch holds at least one frame, not {max_batch}")
        self.cfg = cfg or TensorRTConfig()
        self._importer = importer
        self.opt_batch = min(max_batch, MAX_BATCH)

    @property
    def runtime(self) -> TensorRTRuntime | None:
        """The TensorRT runtime, or None when unavailable (logged once per process)."""
        return tensorrt_runtime(self._importer)

    @property
    def available(self) -> bool:
        """Whether TensorRT, cuda-python and a GPU are all present."""
        return self.runtime is not None

    def can_run(self, variant: Variant, hw: Hardware) -> bool:
        """A prebuilt engine whose target matches this GPU and TensorRT, or an fp32/fp16 ONNX to build from."""
        rt = self.runtime
        if rt is None:
            return False
        if variant.precision == "tensorrt":
            return engine_matches(variant, runtime_hardware(hw, rt)) is None
        return variant.precision in BUILDABLE

    def load(self, path: Path, variant: Variant) -> LoadedModel:
        """Deserialize the engine (prebuilt, cached, or built now) into a runnable model."""
        rt = self.runtime
        if rt is None:
            raise BackendError("TensorRT is unavailable on this device; use the onnxruntime backend")
        if variant.precision == "tensorrt":
            why = engine_matches(variant, runtime_hardware(Hardware(), rt))
            if why:
                raise BackendError(f"{variant.file}: {why}")
            data = _read(path)
        elif variant.precision in BUILDABLE:
            data = self.engine_for(path, variant, rt)
        else:
            raise BackendError(f"{variant.file}: TensorRT builds only fp32/fp16 ONNX here, not {variant.precision}")
        return TrtModel(rt, data, variant.file)

    def engine_for(self, onnx_path: Path, variant: Variant, rt: TensorRTRuntime) -> bytes:
        """The engine for this ONNX from the cache, building (and caching) it on a miss."""
        try:
            digest = sha256_file(onnx_path)
        except OSError as exc:
            raise BackendError(f"cannot read {onnx_path}: {exc.strerror}") from exc
        if digest != variant.sha256:
            raise BackendError(f"{variant.file}: sha256 {digest[:12]}... differs from the manifest; reinstall it")
        fp16 = self.cfg.fp16 or variant.precision == "fp16"
        cache_dir = self.cfg.engine_cache_dir
        key = engine_cache_key(digest, rt.version, rt.gpu_name, fp16=fp16, max_batch=MAX_BATCH,
                               opt_batch=self.opt_batch)
        cached = engine_file(cache_dir, key)
        if cached.is_file():
            log.info("using cached TensorRT engine %s for %s", cached.name, variant.file)
            return _read(cached)
        timing = timing_cache_file(cache_dir, rt.version, rt.gpu_name)
        log.info("building a TensorRT engine for %s (fp16=%s, tuned for batch %d); this takes a while once per model",
                 variant.file, fp16, self.opt_batch)
        engine, timing_bytes = tensorrt_build.build_engine(
            rt.trt, _read(onnx_path), workspace_bytes=self.cfg.workspace_mb << 20, fp16=fp16,
            max_batch=MAX_BATCH, opt_batch=self.opt_batch, timing_cache=_read(timing) if timing.is_file() else b"",
        )
        try:
            atomic_write(cached, engine)
            atomic_write(timing, timing_bytes)
        except OSError as exc:  # a read-only cache only costs a rebuild next time
            log.warning("cannot cache the TensorRT engine in %s: %s", cache_dir, exc.strerror)
        return engine


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BackendError(f"cannot read {path}: {exc.strerror}") from exc
