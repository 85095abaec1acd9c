"""The inference-backend interface every runtime implements, and what variant selection needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from shared.manifest import Variant


@dataclass(frozen=True)
class Hardware:
    """What this device can run; variant selection is a pure function of this and the manifest."""

    cpu_features: frozenset[str] = frozenset()
    cuda: bool = False
    gpu_name: str | None = None
    compute_capability: str | None = None
    tensorrt_version: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class LoadedModel(Protocol):
    """A model ready to run: one float32 NCHW batch in, logits out."""

    input_name: str
    input_shape: tuple[int | str, ...]
    backend: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch."""
        ...

    def close(self) -> None:
        """Release runtime resources."""
        ...


class InferenceBackend(Protocol):
    """Loads package variants into runnable models."""

    name: str

    def can_run(self, variant: Variant, hw: Hardware) -> bool:
        """Whether this backend can run the variant on this hardware."""
        ...

    def load(self, path: Path, variant: Variant) -> LoadedModel:
        """Load a verified variant file; BackendError when it cannot."""
        ...
