"""ONNX Runtime: CPU everywhere, the CUDA provider where the installed build has it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from edge.backends.base import Hardware, LoadedModel
from edge.backends.capabilities import F32, ONNXRUNTIME, runs_precision
from edge.backends.input_check import check_model_input
from edge.config import OnnxRuntimeConfig
from edge.errors import BackendError
from shared.manifest import Manifest, Variant

log = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
TENSORRT_EP = "TensorrtExecutionProvider"
# Providers picked when the config names none; ORT's own TensorRT provider is left to the TensorRT backend.
DEFAULT_ACCELERATORS = (CUDA_EP,)
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
# ORT raises its own exception classes (not RuntimeError subclasses) plus plain Python errors from its wrapper.
_ORT_ERRORS: tuple[type[BaseException], ...] = (
    *(
        getattr(ort_state, n)
        for n in ("Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "NoModel",
                  "NotImplemented", "RuntimeException", "EPFail", "EngineError", "ModelLoadCanceled")
        if hasattr(ort_state, n)
    ),
    RuntimeError,
    ValueError,
    TypeError,
    OSError,
)


def _brief(exc: BaseException, limit: int = 300) -> str:
    """ORT messages can span pages; the first line says what went wrong."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def session_options(threads: int | None = None, *, spin: bool = True) -> ort.SessionOptions:
    """The one ONNX Runtime session recipe, shared by the device and the cloud's gates and latency figures.

    Fixed intra-op threads (None: ORT's default), no inter-op parallelism (one frame at a time), every graph
    optimisation (QDQ fusion needs them), errors-only logging (fp16 models log a notice per upcast node otherwise).
    spin=False stops idle workers from spinning: kinder to other processes on a busy machine, for bulk runs.
    """
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def choose_providers(requested: Sequence[str] | None, available: Sequence[str]) -> tuple[list[str], list[str]]:
    """(providers to use, requested ones this ORT build lacks); the requested order is kept and CPU is always there."""
    if requested is None:
        return [*(p for p in DEFAULT_ACCELERATORS if p in available), CPU_EP], []
    use = [p for p in dict.fromkeys(requested) if p in available]
    missing = [p for p in requested if p not in available]
    return (use if CPU_EP in use else [*use, CPU_EP]), missing


def dim_of(d: int | str | None) -> int | str:
    """A session dimension as the LoadedModel interface reports it: int when fixed, a name when symbolic."""
    if isinstance(d, int) and d > 0:
        return d
    return d if isinstance(d, str) and d else "dynamic"


def _float32(a: np.ndarray) -> np.ndarray:
    """Float outputs as float32 (a float16 model's too); integer outputs (class ids, counts) as they are."""
    return a.astype(np.float32) if a.dtype.kind == "f" and a.dtype != np.float32 else a


class OrtModel:
    """An InferenceSession with one float input; output cast to float32 logits."""

    backend = ONNXRUNTIME
    inference_precision = F32

    def __init__(self, session: ort.InferenceSession, file: str, precision: str = "fp32") -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{file} has {len(inputs)} inputs; edgeferry serves single-input models")
        inp = inputs[0]
        dtype = _INPUT_TYPES.get(inp.type)
        if dtype is None:
            raise BackendError(f"{file} input {inp.name!r} is {inp.type}; expected tensor(float) or tensor(float16)")
        self.input_name: str = inp.name
        self.input_shape: tuple[int | str, ...] = tuple(dim_of(d) for d in inp.shape)
        self.providers = session.get_providers()
        self.device = "cuda" if self.providers[0] == CUDA_EP else "cpu"
        self.precision = precision
        self._dtype = dtype
        self._outputs = [session.get_outputs()[0].name]
        self._all_outputs = [o.name for o in session.get_outputs()]
        self._session: ort.InferenceSession | None = session
        self._file = file

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits as float32 for a float32 batch (cast to float16 for models that take it)."""
        session = self._session
        if session is None:
            raise BackendError(f"{self._file} was closed")
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        try:
            out = session.run(self._outputs, {self.input_name: batch})[0]
        except _ORT_ERRORS as exc:
            raise BackendError(f"{self._file}: inference failed: {_brief(exc)}") from exc
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output by name (detectors decoded in the graph return boxes, scores and class ids apart)."""
        session = self._session
        if session is None:
            raise BackendError(f"{self._file} was closed")
        if batch.dtype != self._dtype:
            batch = batch.astype(self._dtype)
        try:
            outs = session.run(self._all_outputs, {self.input_name: batch})
        except _ORT_ERRORS as exc:
            raise BackendError(f"{self._file}: inference failed: {_brief(exc)}") from exc
        return {name: _float32(np.asarray(o)) for name, o in zip(self._all_outputs, outs, strict=True)}

    def close(self) -> None:
        """Drop the session; ORT frees its memory when the last reference goes."""
        self._session = None


class OnnxRuntimeBackend:
    """Loads ONNX variants into sessions with every graph optimisation on."""

    name = ONNXRUNTIME

    def __init__(self, cfg: OnnxRuntimeConfig | None = None, *, max_batch: int = 1) -> None:
        self.cfg = cfg or OnnxRuntimeConfig()
        # Spinning workers take the cores the streams' capture threads decode on; one source wants the latency.
        self.spin = self.cfg.spin if self.cfg.spin is not None else max_batch <= 1
        self.providers, missing = choose_providers(self.cfg.providers, ort.get_available_providers())
        if missing:
            log.warning("ONNX Runtime build lacks %s; using %s", ", ".join(missing), ", ".join(self.providers))

    @property
    def has_cuda(self) -> bool:
        """Whether sessions will run on the CUDA provider."""
        return CUDA_EP in self.providers

    def can_run(self, variant: Variant, hw: Hardware) -> bool:
        """fp32 and int8 anywhere; fp16 only on CUDA (CPU kernels for it are missing or slow); engines never."""
        if variant.target.device == "tensorrt":
            return False
        return runs_precision(ONNXRUNTIME, variant.precision, gpu=hw.cuda and self.has_cuda)

    def load(self, path: Path, variant: Variant, manifest: Manifest | None = None) -> LoadedModel:
        """A ready session; BackendError when ORT refuses the file or (given a manifest) the input does not fit."""
        try:
            session = ort.InferenceSession(
                str(path), sess_options=session_options(self.cfg.threads, spin=self.spin),
                providers=self.providers,
            )
        except _ORT_ERRORS as exc:
            raise BackendError(
                f"ONNX Runtime cannot load {variant.file} ({variant.precision}): {_brief(exc)}"
            ) from exc
        model = OrtModel(session, variant.file, variant.precision)
        if manifest is not None:
            check_model_input(model, manifest)
        log.info("loaded %s on %s, input %s %s", variant.file, model.providers[0], model.input_name, model.input_shape)
        return model
