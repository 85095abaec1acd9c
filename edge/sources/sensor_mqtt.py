"""Numeric sensor readings pushed in by the agent's MQTT subscription, windowed into float32 [T, C] frames.

A message is one reading (a JSON list of numbers) or several (a list of lists). Rows are checked before windowing
(edge.sensor.input_check): a malformed row is refused, counted by kind and restarts the window; the rest of its
message is still used, and each burst of refusals is logged in one line. Nothing here raises into the MQTT thread.
With a model's window recipe (`set_recipe`) the recipe's window, hop, channel count and sample rate apply.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from edge.sensor.config import InputCheckConfig
from edge.sensor.input_check import BurstReport, Kind, MalformedRow, SensorWindower
from edge.sources.base import Frame
from shared.window_recipe import WindowRecipe

log = logging.getLogger(__name__)

# Windows waiting for the capture thread; the oldest is dropped beyond this, so a stalled reader cannot grow memory.
DEFAULT_BACKLOG = 64


class Subscriber(Protocol):
    """The part of the broker link a sensor source needs."""

    def subscribe(self, topic_filter: str, handler: Callable[[str, bytes], None], *, retained: bool = True) -> None:
        """Deliver messages on topic_filter to handler(topic, payload)."""
        ...


class SensorMqttSource:
    """`feed` takes one reading (a list of numbers) or several (a list of lists) from any thread."""

    live = False

    def __init__(self, topic: str, *, window: int, stride: int, backlog: int = DEFAULT_BACKLOG,
                 checks: InputCheckConfig | None = None, recipe: WindowRecipe | None = None) -> None:
        self.topic = topic
        self.name = f"sensor_mqtt:{topic}"
        self.skipped = 0
        self.overflowed = 0
        self.checks = checks or InputCheckConfig()
        self.recipe = recipe
        self.report = BurstReport(self.name, self.checks.burst_report_s, logger=log)
        self._window_args = (window, stride)
        self._windows = SensorWindower(window, stride, self.checks, recipe)
        self._ready: deque[Frame] = deque(maxlen=backlog)
        self._cond = threading.Condition()
        self._closed = False
        self._index = 0

    def attach(self, link: Subscriber) -> None:
        """Subscribe to the sensor topic (live readings only: a retained one is stale)."""
        link.subscribe(self.topic, self.on_message, retained=False)

    def set_recipe(self, recipe: WindowRecipe | None) -> None:
        """Window for this model from the next reading on; None: the config's window/stride. A changed recipe drops
        pending windows and restarts windowing; the same recipe changes nothing."""
        with self._cond:
            if recipe == self.recipe:
                return  # a new version with the same recipe: the stream goes on without a break
            self.recipe = recipe
            self._windows = SensorWindower(*self._window_args, self.checks, recipe)
            self._ready.clear()

    def on_message(self, topic: str, payload: bytes) -> None:
        """One MQTT message of readings; anything malformed is counted and reported per burst, never raised."""
        try:
            values = json.loads(payload)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            with self._cond:
                self._refuse("unreadable", f"message on {topic} is not JSON readings: {type(exc).__name__}")
            return
        self.feed(values)

    def feed(self, values: object) -> int:
        """Add one reading (a list of numbers) or several (a list of lists); returns how many windows became ready."""
        if isinstance(values, list) and values and all(isinstance(v, list) for v in values):
            rows: list[list[object]] = values
        elif isinstance(values, list | tuple):
            rows = [list(values)]
        elif hasattr(values, "tolist"):  # a numpy array from a test or an in-process producer
            listed = values.tolist()
            rows = listed if listed and isinstance(listed[0], list) else [listed]
        else:
            with self._cond:
                self._refuse("unreadable", f"readings must be a list of numbers or rows, not {type(values).__name__}")
            return 0
        made = 0
        with self._cond:
            for row in rows:
                if not isinstance(row, list):
                    self._refuse("non_numeric", f"a reading row is a {type(row).__name__}, not a list of numbers")
                    continue
                try:
                    window = self._windows.push(row)
                except MalformedRow as exc:
                    self._refuse(exc.kind, str(exc))
                    continue
                self.report.ok()
                if window is None:
                    continue
                if len(self._ready) == self._ready.maxlen:
                    self.overflowed += 1
                self._ready.append(Frame(self._index, window, time.perf_counter(), self.name))
                self._index += 1
                made += 1
            if made:
                self._cond.notify_all()
        return made

    @property
    def pending(self) -> int:
        """Windows waiting for the reader."""
        with self._cond:
            return len(self._ready)

    def _refuse(self, kind: Kind, detail: str) -> None:
        self.report.record(kind, detail)
        self.skipped = self.report.total

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
        """Drop pending windows; a pending burst report is logged."""
        with self._cond:
            self._ready.clear()
            self.report.flush()
