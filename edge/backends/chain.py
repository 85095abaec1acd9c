"""Several backends behind the one interface: each variant goes to the first backend that can run it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge.backends.base import Hardware, InferenceBackend, LoadedModel
from edge.backends.factory import pick_backend
from edge.errors import BackendError
from shared.manifest import Variant


class BackendChain:
    """TensorRT first where present, ONNX Runtime always last, so model sync sees a single backend."""

    def __init__(self, backends: Sequence[InferenceBackend], hw: Hardware) -> None:
        if not backends:
            raise BackendError("no inference backend is available")
        self.backends = list(backends)
        self.hw = hw
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
