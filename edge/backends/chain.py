"""Several backends behind the one interface, and what each offers the runtime choice on this device."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from edge.backends.base import Hardware, InferenceBackend, LoadedModel
from edge.backends.capabilities import F32, TENSORRT, hint_unfit
from edge.backends.onnxruntime_backend import OnnxRuntimeBackend
from edge.backends.openvino_backend import OpenVINOBackend
from edge.errors import BackendError
from edge.runtime_choice import Candidate, ChoiceSettings, Offer
from shared.manifest import Manifest, Variant


def pick_backend(variant: Variant, hw: Hardware, backends: Sequence[InferenceBackend]) -> InferenceBackend | None:
    """The first backend that can run the variant on this hardware."""
    return next((b for b in backends if b.can_run(variant, hw)), None)


def backend_device(backend: InferenceBackend, hw: Hardware) -> str:
    """Where a backend runs its models on this device, as the state payload reports it."""
    if isinstance(backend, OpenVINOBackend):
        return backend.cfg.device
    if isinstance(backend, OnnxRuntimeBackend):
        return "cuda" if backend.has_cuda and hw.cuda else "cpu"
    return "cuda" if backend.name == TENSORRT else "cpu"


def backend_hints(backend: InferenceBackend, hw: Hardware) -> tuple[str, ...]:
    """Inference precision hints a backend offers: OpenVINO's device capabilities that this CPU computes natively
    (a forced one as configured: OpenVINO reports what it really ran), else f32."""
    if not isinstance(backend, OpenVINOBackend):
        return (F32,)
    forced = backend.cfg.inference_precision
    if forced != "auto":
        return (forced,)
    hints = backend.hints()
    if backend.cfg.device != "CPU":
        return hints
    return tuple(h for h in hints if hint_unfit(h, hw.cpu_features) is None)


class BackendChain:
    """The configured runtimes, preferred first; ONNX Runtime is always among them, so a model can always load."""

    def __init__(
        self, backends: Sequence[InferenceBackend], hw: Hardware, settings: ChoiceSettings | None = None
    ) -> None:
        if not backends:
            raise BackendError("no inference backend is available")
        self.backends = list(backends)
        self.hw = hw
        self.settings = settings or ChoiceSettings()
        self.name = "+".join(b.name for b in self.backends)

    def can_run(self, variant: Variant, hw: Hardware) -> bool:
        """Whether any backend runs the variant."""
        return pick_backend(variant, hw, self.backends) is not None

    def load(self, path: Path, variant: Variant) -> LoadedModel:
        """Load with the first backend that can run the variant on this device."""
        backend = pick_backend(variant, self.hw, self.backends)
        if backend is None:
            raise BackendError(f"no backend among {self.name} can run {variant.file} ({variant.precision})")
        return backend.load(path, variant)

    def offers(self) -> list[Offer]:
        """What each runtime can run here, in preference order; a forced runtime alone while it is in the chain."""
        forced = [b for b in self.backends if b.name == self.settings.forced_backend]
        chosen = forced or self.backends
        return [Offer(b.name, backend_device(b, self.hw), backend_hints(b, self.hw), self._runs(b)) for b in chosen]

    def _runs(self, backend: InferenceBackend) -> Callable[[Variant], bool]:
        return lambda v: backend.can_run(v, self.hw)

    def devices(self) -> dict[str, list[str]]:
        """Each runtime's devices on this machine, for the state payload (OpenVINO: CPU here, GPU/NPU where present)."""
        return {
            b.name: b.devices() if isinstance(b, OpenVINOBackend) else [backend_device(b, self.hw)]
            for b in self.backends
        }

    def runtime_versions(self) -> dict[str, str]:
        """Versions of the runtimes in the chain, for the choice's cache key."""
        out: dict[str, str] = {}
        for b in self.backends:
            if isinstance(b, OpenVINOBackend):
                out[b.name] = b.version or "unavailable"
            elif isinstance(b, OnnxRuntimeBackend):
                import onnxruntime

                out[b.name] = f"{onnxruntime.__version__} ({','.join(b.providers)})"
            else:
                out[b.name] = self.hw.tensorrt_version or "unknown"
        return out

    def load_candidate(self, path: Path, candidate: Candidate, manifest: Manifest | None = None) -> LoadedModel:
        """Load one candidate with its own backend and inference hint; BackendError when it cannot."""
        backend = next((b for b in self.backends if b.name == candidate.backend), None)
        if backend is None:
            raise BackendError(f"{candidate.backend} is not among the backends {self.name}")
        if isinstance(backend, OpenVINOBackend):
            return backend.load(path, candidate.variant, manifest, inference_precision=candidate.hint)
        if isinstance(backend, OnnxRuntimeBackend):
            return backend.load(path, candidate.variant, manifest)
        return backend.load(path, candidate.variant)
