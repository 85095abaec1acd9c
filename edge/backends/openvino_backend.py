"""OpenVINO: the package's ONNX files compiled for an Intel CPU, GPU or NPU, with an inference precision hint.

`openvino` is an optional extra, imported lazily: without it the backend says so in one log line and reports
itself unavailable, so the chain goes on with the next runtime.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edge.backends.base import Hardware, LoadedModel
from edge.backends.capabilities import F32, OPENVINO, isa_unfit, openvino_hints, runs_precision
from edge.backends.input_check import check_model_input
from edge.config import OpenVINOConfig
from edge.errors import BackendError
from shared.manifest import Manifest, Variant

log = logging.getLogger(__name__)

Importer = Callable[[str], ModuleType]
# OpenVINO raises RuntimeError (its C++ exceptions) and plain Python errors from its wrapper.
_OV_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, TypeError, OSError)
# Importing can also fail for a missing wheel (ImportError) or missing shared libraries (OSError, above).
_PROBE_ERRORS: tuple[type[BaseException], ...] = (ImportError, *_OV_ERRORS)
_PROPERTY_ERRORS: tuple[type[BaseException], ...] = (AttributeError, *_OV_ERRORS)


def brief(exc: BaseException, limit: int = 300) -> str:
    """OpenVINO prefixes messages with source locations ('Exception from src/...'); keep the line that says why."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.startswith(("Exception from ", "Check '"))] or lines
    text = useful[0] if useful else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dim(d: Any) -> int | str:
    return int(d.get_length()) if d.is_static else "dynamic"


class OvModel:
    """One compiled model and its infer request; single-threaded use, as the frame loop runs it."""

    backend = OPENVINO

    def __init__(self, compiled: Any, file: str, device: str, precision: str, inference_precision: str) -> None:
        inputs = compiled.inputs
        if len(inputs) != 1:
            raise BackendError(f"{file} has {len(inputs)} inputs; edgeferry serves single-input models")
        self.input_name: str = inputs[0].get_any_name()
        self.input_shape: tuple[int | str, ...] = tuple(_dim(d) for d in inputs[0].get_partial_shape())
        self.device = device
        self.precision = precision
        self.inference_precision = inference_precision
        self.loaded_from_cache = False
        self._compiled: Any = compiled
        self._request: Any = compiled.create_infer_request()
        # A static input gets its frames copied into the request's own buffer: ~10 us less per call than the
        # dict-and-wrap path, which matters on sub-0.1 ms models.
        static = all(isinstance(d, int) for d in self.input_shape)
        self._input_view: np.ndarray | None = self._request.get_input_tensor(0).data if static else None
        self._file = file

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits as float32 (a copy: the request reuses its output buffer on the next call)."""
        request = self._request
        if request is None:
            raise BackendError(f"{self._file} was closed")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        view = self._input_view
        try:
            if view is not None and batch.shape == view.shape:
                np.copyto(view, batch)
                request.infer()
            else:
                request.infer({0: batch}, share_inputs=True)
            out = request.get_output_tensor(0).data
        except _OV_ERRORS as exc:
            raise BackendError(f"{self._file}: OpenVINO inference failed: {brief(exc)}") from exc
        return np.array(out, dtype=np.float32, copy=True)

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name, copied (detectors decoded in the graph return boxes, scores and class ids apart)."""
        request = self._request
        if request is None:
            raise BackendError(f"{self._file} was closed")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        try:
            request.infer({0: batch}, share_inputs=True)
            outs = {}
            for i, port in enumerate(self._compiled.outputs):
                data = np.array(request.get_output_tensor(i).data, copy=True)
                outs[port.get_any_name()] = data.astype(np.float32) if data.dtype.kind == "f" else data
        except _OV_ERRORS as exc:
            raise BackendError(f"{self._file}: OpenVINO inference failed: {brief(exc)}") from exc
        return outs

    def close(self) -> None:
        """Drop the request and compiled model; OpenVINO frees them with the last reference."""
        self._request = None
        self._input_view = None
        self._compiled = None


class OpenVINOBackend:
    """Compiles ONNX variants with OpenVINO; the inference precision hint is part of what is loaded."""

    name = OPENVINO

    def __init__(self, cfg: OpenVINOConfig | None = None, importer: Importer = importlib.import_module) -> None:
        self.cfg = cfg or OpenVINOConfig()
        self._importer = importer
        self._lock = threading.Lock()
        self._probed = False
        self._core: Any = None
        self.version: str | None = None
        self.reason: str | None = None

    def _probe(self) -> Any:
        """The ov.Core, created once; None (with `reason` and one log line) when OpenVINO is unusable here."""
        with self._lock:
            if not self._probed:
                self._probed = True
                try:
                    ov = self._importer("openvino")
                    core = ov.Core()
                    devices = list(core.available_devices)
                except _PROBE_ERRORS as exc:
                    self.reason = f"OpenVINO is not usable ({brief(exc)}); install the 'openvino' extra to use it"
                    log.info("%s; skipping it", self.reason)
                    return None
                self.version = str(ov.get_version())
                device_family = self.cfg.device.split(".")[0].split(":")[0]
                if device_family not in {"AUTO", "MULTI", "HETERO"} and not any(
                    d.split(".")[0] == device_family for d in devices
                ):
                    self.reason = f"OpenVINO {self.version} has no {self.cfg.device} device (it has {devices})"
                    log.info("%s; skipping it", self.reason)
                    return None
                self._core = core
                log.info("OpenVINO %s: devices %s", self.version, ", ".join(devices))
            return self._core

    @property
    def available(self) -> bool:
        """Whether openvino imports and the configured device exists."""
        return self._probe() is not None

    def devices(self) -> list[str]:
        """OpenVINO's devices on this machine (CPU here; GPU and NPU where present)."""
        core = self._probe()
        return [] if core is None else list(core.available_devices)

    def hints(self) -> tuple[str, ...]:
        """Inference precision hints the configured device supports, f32 first."""
        core = self._probe()
        if core is None:
            return ()
        try:
            caps = set(core.get_property(self.cfg.device, "OPTIMIZATION_CAPABILITIES"))
        except _OV_ERRORS as exc:
            log.info("OpenVINO cannot report %s's capabilities (%s); offering f32 only", self.cfg.device, brief(exc))
            return (F32,)
        return openvino_hints(caps)

    def compile_cache_dir(self, hint: str) -> Path:
        """One cache dir per compile setting: OpenVINO's cache key leaves out the precision hint (2026.4 serves an
        f32 blob to an f16 request from a shared dir), so settings must never share one."""
        threads = self.cfg.threads or "auto"
        return self.cfg.cache_dir / f"{self.cfg.device}-{hint}-{self.cfg.performance_hint.lower()}-t{threads}"

    def can_run(self, variant: Variant, hw: Hardware) -> bool:
        """ONNX fp32 and int8 variants, on a CPU that meets OpenVINO's needs; engines and fp16 files never."""
        if variant.target.device == "tensorrt" or not runs_precision(OPENVINO, variant.precision, gpu=False):
            return False
        return isa_unfit(OPENVINO, hw) is None and self.available

    def load(
        self, path: Path, variant: Variant, manifest: Manifest | None = None, *, inference_precision: str | None = None
    ) -> LoadedModel:
        """Read and compile the ONNX file; BackendError (one line) when OpenVINO refuses it or the device fails."""
        core = self._probe()
        if core is None:
            raise BackendError(self.reason or "OpenVINO is not available")
        hint = inference_precision or (F32 if self.cfg.inference_precision == "auto" else self.cfg.inference_precision)
        try:
            model = core.read_model(str(path))
            inp = model.inputs[0] if len(model.inputs) == 1 else None
            shape = inp.get_partial_shape() if inp is not None else None
            if inp is not None and shape is not None and len(shape) >= 1 and shape[0].is_dynamic and not any(
                d.is_dynamic for d in list(shape)[1:]
            ):
                # The agent runs one frame at a time: a static batch of 1 lets OpenVINO pick its fastest kernels.
                model.reshape({inp.get_any_name(): [1, *(int(d.get_length()) for d in list(shape)[1:])]})
            config: dict[str, Any] = {
                "PERFORMANCE_HINT": self.cfg.performance_hint,
                "INFERENCE_PRECISION_HINT": hint,
                "CACHE_DIR": str(self.compile_cache_dir(hint)),
            }
            if self.cfg.threads:
                config["INFERENCE_NUM_THREADS"] = self.cfg.threads
            compiled = core.compile_model(model, self.cfg.device, config)
        except _OV_ERRORS as exc:
            raise BackendError(
                f"OpenVINO cannot compile {variant.file} ({variant.precision}, {hint}) for {self.cfg.device}: "
                f"{brief(exc)}"
            ) from exc
        try:  # the device may run another precision than asked (no bf16 units): report what it really uses
            actual = str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
            cached = bool(compiled.get_property("LOADED_FROM_CACHE"))
        except _PROPERTY_ERRORS:
            actual, cached = hint, False
        loaded = OvModel(compiled, variant.file, self.cfg.device, variant.precision, actual)
        loaded.loaded_from_cache = cached
        if manifest is not None:
            check_model_input(loaded, manifest)
        log.info("loaded %s on OpenVINO %s (%s hint%s), input %s %s", variant.file, self.cfg.device, actual,
                 ", from the compile cache" if cached else "", loaded.input_name, loaded.input_shape)
        return loaded
