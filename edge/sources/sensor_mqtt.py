"""Numeric sensor readings pushed in by the agent's MQTT subscription, windowed into float32 HxW frames."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edge.errors import SourceError
from edge.sources.base import Frame
from edge.sources.windowing import RowWindow

log = logging.getLogger(__name__)

# Windows waiting for the capture thread; the oldest is dropped beyond this, so a stalled reader cannot grow memory.
DEFAULT_BACKLOG = 64
# A flood of bad readings logs this often at most; every one is still counted in `skipped`.
WARN_EVERY_S = 10.0


class Subscriber(Protocol):
    """The part of the broker link a sensor source needs."""

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None], *, retained: bool = True) -> None:
        """Deliver messages on topic_filter to handler(topic, payload)."""
        ...


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
        self._last_warning = -WARN_EVERY_S

    def attach(self, link: Subscriber) -> None:
        """Subscribe to the sensor topic (live readings only: a retained one is stale)."""
        link.subscribe(self.topic, self.on_message, retained=False)

    def on_message(self, topic: str, payload: bytes) -> None:
        """One MQTT message of readings; a malformed one is counted and warned about in one line, never raised."""
        try:
            values = json.loads(payload)
            self.feed(values)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            self.skipped += 1
            self._warn(f"{self.name}: message on {topic} is not JSON readings: {type(exc).__name__}")
        except SourceError as exc:
            self._warn(str(exc))

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            self._last_warning = now
            log.warning("%s (%d malformed sensor messages so far)", text, self.skipped)

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
