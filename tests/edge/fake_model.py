"""A LoadedModel double that records how it is used: runs, failures on chosen calls, and when it was closed."""

from __future__ import annotations

import threading

import numpy as np

from edge.errors import BackendError


class FakeModel:
    """Always predicts `favour`; raises BackendError on the run numbers in fail_runs (counted from 1)."""

    backend = "fake"

    def __init__(
        self,
        favour: int = 0,
        *,
        classes: int = 10,
        shape: tuple[int | str, ...] = ("batch", 1, 28, 28),
        fail_runs: frozenset[int] = frozenset(),
    ) -> None:
        self.input_name = "input"
        self.input_shape = shape
        self.favour = favour
        self.classes = classes
        self.fail_runs = fail_runs
        self.runs = 0
        self.closed = threading.Event()
        self.runs_after_close = 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.runs += 1
        if self.closed.is_set():
            self.runs_after_close += 1
        if self.runs in self.fail_runs:
            raise BackendError(f"injected failure on run {self.runs}")
        out = np.zeros((batch.shape[0], self.classes), np.float32)
        out[:, self.favour] = 5.0
        return out

    def close(self) -> None:
        self.closed.set()
