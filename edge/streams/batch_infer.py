"""Runs several streams' frames through one model: in flight at once where the runtime keeps several requests
(OpenVINO's async mode), else one batched call where the variant has a dynamic batch axis, else frame by frame;
either way each frame gets the output its own single-frame run would give."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np

from edge.backends.base import LoadedModel
from edge.batch_figures import has_dynamic_batch
from edge.errors import BackendError
from edge.hot_swap import ServingModel
from edge.task_decode import RawOutput

log = logging.getLogger(__name__)


def has_batch_axis(model: LoadedModel) -> bool:
    """The model's first input dimension is symbolic (it takes any batch size)."""
    return len(model.input_shape) > 1 and has_dynamic_batch(model.input_shape)


# Runs frames in flight at once: one output per input, the first output or (every=True) every output by name.
EachRunner = Callable[..., list[RawOutput]]
# The served model's frames in flight at once, each output as its task needs it.
InFlight = Callable[[Sequence[np.ndarray]], list[RawOutput]]


def in_flight_runner(serving: ServingModel) -> InFlight | None:
    """How the served model runs several frames in flight at once, matching what its task needs (the first output,
    or every output by name); None where its runtime keeps one request (it batches or runs frame by frame)."""
    model = serving.model
    if getattr(model, "in_flight", 1) < 2:
        return None
    run_each: EachRunner = model.run_each  # type: ignore[attr-defined]
    return partial(run_each, every=serving.infer == getattr(model, "run_outputs", None))


def split_output(raw: RawOutput, n: int) -> list[RawOutput] | None:
    """The output of an n-frame batch as n single-frame outputs; None when an output has no per-frame first axis."""
    if isinstance(raw, Mapping):
        arrays = {name: np.asarray(v) for name, v in raw.items()}
        if not arrays or any(a.ndim == 0 or a.shape[0] != n for a in arrays.values()):
            return None
        return [{name: a[i : i + 1] for name, a in arrays.items()} for i in range(n)]
    array = np.asarray(raw)
    if array.ndim == 0 or array.shape[0] != n:
        return None
    return [array[i : i + 1] for i in range(n)]


class BatchRunner:
    """Called from the frame thread only; remembers models whose batched run failed so they run frame by frame."""

    def __init__(self) -> None:
        # Generations of served models that refused a batch (e.g. an engine whose profile stops at 1).
        self._single: set[int] = set()
        self.batches = 0
        self.batched_frames = 0
        # Of those, runs whose frames were in flight at once on several requests rather than one batched call.
        self.in_flight_batches = 0
        # The batch input, reused while the batch's shape and dtype stay the same: no fresh multi-MB array (and
        # its page faults) per batch. The runtime reads it during the call only.
        self._buffer: np.ndarray | None = None
        # How the last served model runs frames together, worked out once per generation rather than per batch:
        # its in-flight runner (None: one request), and whether it runs together at all (in flight or batched).
        self._planned: int | None = None
        self._each: InFlight | None = None
        self._together = False

    def _plan(self, serving: ServingModel) -> None:
        if serving.generation != self._planned:
            self._each = in_flight_runner(serving)
            self._together = self._each is not None or has_batch_axis(serving.model)
            self._planned = serving.generation

    def in_flight(self, serving: ServingModel) -> InFlight | None:
        """How this model runs frames in flight at once; None where it batches or runs frame by frame."""
        self._plan(serving)
        return self._each

    def can_batch(self, serving: ServingModel) -> bool:
        """Whether frames of this model are run together: in flight on several requests, or one batched call."""
        self._plan(serving)
        return self._together and serving.generation not in self._single

    def run(self, serving: ServingModel, tensors: Sequence[np.ndarray]) -> list[RawOutput]:
        """One output per tensor (each a batch of one), in order."""
        if len(tensors) > 1 and self.can_batch(serving):
            each = self._each
            outputs = self._in_flight(serving, each, tensors) if each is not None else self._batched(serving, tensors)
            if outputs is not None:
                return outputs
        return [serving.infer(t) for t in tensors]

    def _in_flight(
        self, serving: ServingModel, each: InFlight, tensors: Sequence[np.ndarray]
    ) -> list[RawOutput] | None:
        try:
            outputs = each(tensors)
        except BackendError as exc:
            self._refuse(serving, f"failed {len(tensors)} frames in flight: {exc}")
            return None
        self.batches += 1
        self.in_flight_batches += 1
        self.batched_frames += len(tensors)
        return outputs

    def _batched(self, serving: ServingModel, tensors: Sequence[np.ndarray]) -> list[RawOutput] | None:
        try:
            raw = serving.infer(self._stack(tensors))
        except BackendError as exc:
            self._refuse(serving, f"refused a batch of {len(tensors)}: {exc}")
            return None
        outputs = split_output(raw, len(tensors))
        if outputs is None:
            self._refuse(serving, "returned outputs without a per-frame first axis")
            return None
        self.batches += 1
        self.batched_frames += len(tensors)
        return outputs

    def _stack(self, tensors: Sequence[np.ndarray]) -> np.ndarray:
        """The tensors concatenated on their first axis, into the reused buffer where it fits."""
        first = tensors[0]
        shape = (sum(t.shape[0] for t in tensors), *first.shape[1:])
        dtype = np.result_type(*tensors)
        buffer = self._buffer
        if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
            buffer = self._buffer = np.empty(shape, dtype)
        return np.concatenate(tensors, out=buffer)

    def _refuse(self, serving: ServingModel, why: str) -> None:
        self._single.add(serving.generation)
        log.warning("model version %d (%s) %s; its frames run one by one", serving.version, serving.variant.file, why)
