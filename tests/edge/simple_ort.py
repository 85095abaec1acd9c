"""A minimal onnxruntime LoadedModel/InferenceBackend for sync tests, independent of the runtime helper's backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge.backends.base import Hardware
from edge.errors import BackendError
from shared.manifest import Variant


class SimpleOrtModel:
    """One CPU InferenceSession."""

    backend = "simple-ort"

    def __init__(self, path: Path) -> None:
        try:
            self.session: ort.InferenceSession | None = ort.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own pybind classes; re-raised as BackendError
            raise BackendError(f"onnxruntime cannot load {path.name}: {exc}") from exc
        first = self.session.get_inputs()[0]
        self.input_name: str = first.name
        self.input_shape: tuple[int | str, ...] = tuple(first.shape)
        self.closed = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a batch."""
        assert self.session is not None, "run() after close()"
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])

    def close(self) -> None:
        """Drop the session."""
        self.session = None
        self.closed = True


class SimpleOrtBackend:
    """Runs fp32/int8 on CPU; fp16 only with CUDA; never TensorRT engines. Remembers what it loaded."""

    name = "simple-ort"

    def __init__(self) -> None:
        self.loaded: list[tuple[str, SimpleOrtModel]] = []

    def can_run(self, variant: Variant, hw: Hardware) -> bool:
        """Same rule as the real ONNX Runtime backend."""
        if variant.precision == "tensorrt":
            return False
        return variant.precision != "fp16" or hw.cuda

    def load(self, path: Path, variant: Variant) -> SimpleOrtModel:
        """Open a session."""
        model = SimpleOrtModel(path)
        self.loaded.append((variant.file, model))
        return model
