"""Numeric sensor readings pushed in by the agent's MQTT subscription, windowed into float32 HxW frames."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from edge.errors import SourceError
from edge.sources.base import Frame
from edge.sources.windowing import RowWindow

log = logging.getLogger(__name__)

# Windows waiting for the capture thread; the oldest is dropped beyond this, so a stalled reader cannot grow memory.
DEFAULT_BACKLOG = 64


class SensorMqttSource:
    """`feed` takes one reading (a list of numbers) or several (a list of lists) from any thread."""

    live = False

    def __init__(self, topic: str, *, window: int, stride: int, backlog: int = DEFAULT_BACKLOG) -> None:
        self.topic = topic
        self.name = f"sensor_mqtt:{topic}"
        self.skipped = 0
        self.overflowed = 0
        self._window_args = (window, stride)
        self._windows = RowWindow(window, stride)
        self._ready: deque[Frame] = deque(maxlen=backlog)
        self._cond = threading.Condition()
        self._closed = False
        self._index = 0

    def feed(self, values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray) -> int:
        """Add readings; returns how many windows became ready. SourceError (counted) on malformed values."""
        try:
            rows = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            self.skipped += 1
            raise SourceError(f"{self.name}: readings must be numbers or rows of numbers: {exc}") from exc
        if rows.ndim == 1:
            rows = rows[np.newaxis, :]
        if rows.ndim != 2:
            self.skipped += 1
            raise SourceError(f"{self.name}: readings must be a list of numbers or of rows, got shape {rows.shape}")
        made = 0
        with self._cond:
            try:
                for row in rows:
                    try:
                        window = self._windows.push(row)
                    except ValueError as exc:
                        self.skipped += 1
                        raise SourceError(f"{self.name}: {exc}") from exc
                    if window is None:
                        continue
                    if len(self._ready) == self._ready.maxlen:
                        self.overflowed += 1
                    self._ready.append(Frame(self._index, window, time.perf_counter(), self.name))
                    self._index += 1
                    made += 1
            finally:
                if made:
                    self._cond.notify_all()
        return made

    def open(self) -> None:
        """Accept readings again after a close."""
        with self._cond:
            self._closed = False

    def read(self) -> Frame | None:
        """Block until a window is ready; None once interrupted."""
        with self._cond:
            while not self._ready and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            return self._ready.popleft()

    def interrupt(self) -> None:
        """Wake the reader; it returns None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def close(self) -> None:
        """Drop pending windows."""
        with self._cond:
            self._ready.clear()
