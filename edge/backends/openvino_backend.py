"""OpenVINO: the package's ONNX files compiled for an Intel CPU, GPU or NPU, with an inference precision hint.

`openvino` is an optional extra, imported lazily: without it the backend says so in one log line and reports
itself unavailable, so the chain goes on with the next runtime.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
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
    """One compiled model and its infer request (and, serving several streams in 'async' mode, a queue of requests
    that keeps frames in flight at once); used from one thread at a time, as the frame loop runs it."""

    backend = OPENVINO

    def __init__(
        self, compiled: Any, file: str, device: str, precision: str, inference_precision: str, queue: Any = None
    ) -> None:
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
        # An ov.AsyncInferQueue: run_each() starts one request per frame and waits for all of them.
        self._queue: Any = queue
        self.in_flight: int = len(queue) if queue is not None else 1
        if queue is not None:
            queue.set_callback(self._done)

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
            outs = self._outputs(request)
        except _OV_ERRORS as exc:
            raise BackendError(f"{self._file}: OpenVINO inference failed: {brief(exc)}") from exc
        return outs

    def run_each(self, batches: Sequence[np.ndarray], every: bool = False) -> list[np.ndarray | dict[str, np.ndarray]]:
        """One output per input batch (the first output, or every output by name), the inputs run in flight at once
        on the request queue; each output is what run() or run_outputs() would give that input alone."""
        queue = self._queue
        if queue is None:
            state = "was closed" if self._request is None else "keeps one request (streams_mode 'batch')"
            raise BackendError(f"{self._file} {state}: it runs no frames in flight")
        inputs = [b if b.dtype == np.float32 else b.astype(np.float32) for b in batches]
        outs: list[Any] = [None] * len(inputs)
        failed: list[BaseException] = []
        try:
            for i, batch in enumerate(inputs):
                queue.start_async({0: batch}, (outs, failed, i, every), share_inputs=True)
            queue.wait_all()
        except _OV_ERRORS as exc:
            self._drain(queue)
            raise BackendError(f"{self._file}: OpenVINO inference failed: {brief(exc)}") from exc
        if failed:
            raise BackendError(f"{self._file}: OpenVINO inference failed: {brief(failed[0])}") from failed[0]
        return outs

    def _done(self, request: Any, job: tuple[list[Any], list[BaseException], int, bool]) -> None:
        """A request finished (OpenVINO's thread): its output, copied, into its frame's slot."""
        outs, failed, i, every = job
        try:
            outs[i] = self._outputs(request) if every else np.array(
                request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        except _OV_ERRORS as exc:
            failed.append(exc)

    @staticmethod
    def _drain(queue: Any) -> None:
        """Wait for what was started before a failed start, so no request still reads a frame the caller frees."""
        try:
            queue.wait_all()
        except _OV_ERRORS as exc:
            log.debug("OpenVINO requests failed while draining after a failed start: %s", brief(exc))

    def _outputs(self, request: Any) -> dict[str, np.ndarray]:
        outs = {}
        for i, port in enumerate(self._compiled.outputs):
            data = np.array(request.get_output_tensor(i).data, copy=True)
            outs[port.get_any_name()] = data.astype(np.float32) if data.dtype.kind == "f" else data
        return outs

    def close(self) -> None:
        """Drop the requests and compiled model; OpenVINO frees them with the last reference."""
        self._request = None
        self._input_view = None
        self._queue = None
        self._compiled = None


class OpenVINOBackend:
    """Compiles ONNX variants with OpenVINO; the inference precision hint is part of what is loaded.

    `max_batch`: the most frames the agent runs together (batching.max_size of an agent serving `streams:`; 1 for
    one source). Above 1, a dynamic-batch model keeps its batch axis ('batch' mode) or is compiled at batch 1 for
    OpenVINO's throughput streams with max_batch async requests ('async' mode)."""

    name = OPENVINO

    def __init__(
        self, cfg: OpenVINOConfig | None = None, importer: Importer = importlib.import_module, *, max_batch: int = 1
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"a batch holds at least one frame, not {max_batch}")
        self.cfg = cfg or OpenVINOConfig()
        self.max_batch = max_batch
        self._importer = importer
        self._lock = threading.Lock()
        self._probed = False
        self._core: Any = None
        # ov.AsyncInferQueue of the module _probe imported (None: that OpenVINO has none).
        self._async_queue: Any = None
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
                self._async_queue = getattr(ov, "AsyncInferQueue", None)
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
        return self.cfg.cache_dir / (
            f"{self.cfg.device}-{hint}-{self._performance_hint().lower()}-t{threads}{self._shape_tag()}"
        )

    @property
    def async_streams(self) -> bool:
        """Frames of several streams run as async requests on throughput streams, not as one batched call."""
        return self.max_batch > 1 and self.cfg.streams_mode == "async"

    def _performance_hint(self) -> str:
        """THROUGHPUT where async requests must run side by side (one CPU stream per request); else the config's."""
        return "THROUGHPUT" if self.async_streams else self.cfg.performance_hint

    def _shape_tag(self) -> str:
        """The batch the model is compiled for, in the cache dir name: a static and a dynamic copy never share one."""
        if self.max_batch == 1:
            return ""
        return f"-async{self.max_batch}" if self.async_streams else "-dynamic"

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
        if self.async_streams and self._async_queue is None:
            raise BackendError(f"OpenVINO {self.version} has no AsyncInferQueue, which backend.streams_mode 'async' "
                               "needs; set streams_mode: batch or install a newer openvino")
        hint = inference_precision or (F32 if self.cfg.inference_precision == "auto" else self.cfg.inference_precision)
        try:
            model = core.read_model(str(path))
            inp = model.inputs[0] if len(model.inputs) == 1 else None
            shape = inp.get_partial_shape() if inp is not None else None
            batch_only = shape is not None and len(shape) >= 1 and shape[0].is_dynamic and not any(
                d.is_dynamic for d in list(shape)[1:]
            )
            if inp is not None and shape is not None and batch_only and self._one_at_a_time():
                # One frame per call: a static batch of 1, where OpenVINO picks its fastest kernels and a frame is
                # copied straight into the request's buffer (measured: a dynamic axis costs ~1.6x per batch-1 call
                # on the digits model, nothing measurable on the reference model; bench/results/streams.md).
                model.reshape({inp.get_any_name(): [1, *(int(d.get_length()) for d in list(shape)[1:])]})
            config: dict[str, Any] = {
                "PERFORMANCE_HINT": self._performance_hint(),
                "INFERENCE_PRECISION_HINT": hint,
                "CACHE_DIR": str(self.compile_cache_dir(hint)),
            }
            if self.cfg.threads:
                config["INFERENCE_NUM_THREADS"] = self.cfg.threads
            compiled = core.compile_model(model, self.cfg.device, config)
            queue = self._async_queue(compiled, self.max_batch) if self.async_streams else None
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
        loaded = OvModel(compiled, variant.file, self.cfg.device, variant.precision, actual, queue)
        loaded.loaded_from_cache = cached
        if manifest is not None:
            check_model_input(loaded, manifest)
        log.info("loaded %s on OpenVINO %s (%s hint%s), input %s %s%s", variant.file, self.cfg.device, actual,
                 ", from the compile cache" if cached else "", loaded.input_name, loaded.input_shape,
                 f", {loaded.in_flight} async requests" if queue is not None else "")
        return loaded

    def _one_at_a_time(self) -> bool:
        """Each call runs one frame: one source, or several streams' frames as async requests. Else (streams
        batched) a dynamic batch axis stays dynamic, so the scheduler's batches run as one call."""
        return self.max_batch == 1 or self.async_streams
