"""Checks sensor rows before they are windowed, so no window holds a row that does not belong to the series.

Choice: a malformed row is refused before windowing and the window restarts after it, so no window ever spans a
refused row, a gap or a jump back in time (a silent wrong result); the rows already collected are dropped with it.
A window whose timestamps give a rate far from the model's `sample_rate_hz` is dropped. Each refusal is counted by
kind, and a run of them is logged in one line per burst (BurstReport), never raised into the reading thread.

Kinds: unreadable (a message that is not JSON), width (wrong value count), non_numeric, nan (NaN or infinity),
missing_timestamp, out_of_order (time not after the previous row), gap (missing rows: the window restarts, the row
itself is kept), rate (a window at the wrong sample rate). Timestamps are checked when `timestamp_column` is on:
each row then starts with its reading time in seconds. Without timestamps, order and rate cannot be checked.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from edge.sensor.config import InputCheckConfig
from shared.window_recipe import WindowRecipe
from shared.windowing import RowWindow, row_window

Kind = Literal["unreadable", "width", "non_numeric", "nan", "missing_timestamp", "out_of_order", "gap", "rate"]
KINDS: tuple[Kind, ...] = ("unreadable", "width", "non_numeric", "nan", "missing_timestamp", "out_of_order", "gap",
                           "rate")


class MalformedRow(ValueError):
    """A row (or the window it completed) that cannot be used, with its kind."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind: Kind = kind


class BurstReport:
    """Counts malformed input by kind and logs each burst in one line: when good input returns, or every report_s."""

    def __init__(self, name: str, report_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None) -> None:
        self.name = name
        self.report_s = report_s
        self.totals: dict[Kind, int] = dict.fromkeys(KINDS, 0)
        self.bursts = 0
        self._clock = clock
        self._log = logger or logging.getLogger(__name__)
        self._pending: dict[Kind, int] = {}
        self._first = ""
        self._burst_start = 0.0
        self._last_line = -math.inf

    @property
    def total(self) -> int:
        """Malformed rows, messages and windows since start."""
        return sum(self.totals.values())

    def record(self, kind: Kind, detail: str) -> None:
        """One malformed item; a burst that has lasted report_s (and no line for as long) is logged so far."""
        now = self._clock()
        self.totals[kind] += 1
        if not self._pending:
            self._first, self._burst_start = detail, now
        self._pending[kind] = self._pending.get(kind, 0) + 1
        if now - self._burst_start >= self.report_s and now - self._last_line >= self.report_s:
            self.flush()

    def ok(self) -> None:
        """Good input arrived: the burst is over; log it unless a line went out less than report_s ago."""
        if self._pending and self._clock() - self._last_line >= self.report_s:
            self.flush()

    def flush(self) -> None:
        """Log what is pending now (end of stream, close)."""
        if not self._pending:
            return
        n = sum(self._pending.values())
        kinds = ", ".join(f"{k} {v}" for k, v in self._pending.items())
        self._log.warning("%s: %d malformed sensor input%s refused (%s); first: %s; %d since start",
                          self.name, n, "" if n == 1 else "s", kinds, self._first, self.total)
        self.bursts += 1
        self._pending = {}
        self._last_line = self._clock()


def _number(cell: object) -> float:
    if isinstance(cell, bool) or not isinstance(cell, int | float | str):
        raise MalformedRow("non_numeric", f"{type(cell).__name__} where a number belongs")
    try:
        return float(cell)
    except (ValueError, OverflowError) as exc:
        raise MalformedRow("non_numeric", f"{str(cell)[:40]!r} is not a number") from exc


class SensorWindower:
    """Checked rows in, raw [T, C] float32 windows out; a model's recipe fixes width, rate and window/hop."""

    def __init__(self, window: int, stride: int, checks: InputCheckConfig | None = None,
                 recipe: WindowRecipe | None = None) -> None:
        self.checks = checks or InputCheckConfig()
        self.recipe = recipe
        self._rows = row_window(recipe) if recipe is not None else RowWindow(window, stride)
        self._size = self._rows.window
        self._stamps: deque[float] = deque(maxlen=self._size)
        self._last_ts: float | None = None
        self._width: int | None = None if recipe is None else recipe.num_channels
        self.restarts = 0

    @property
    def channels(self) -> int | None:
        """Values per reading: the recipe's channels, else the first accepted row's width (None before it)."""
        return self._width

    def push(self, cells: Sequence[object]) -> np.ndarray | None:
        """One row of cells; a window when one is due. MalformedRow when the row (or its window) is refused."""
        try:
            values = [_number(c) for c in cells]
            if not values:
                raise MalformedRow("width", "an empty row")
        except MalformedRow:
            self._restart()
            raise
        stamp: float | None = None
        if self.checks.timestamp_column:
            stamp, values = self._timestamp(values)
        if self._width is not None and len(values) != self._width:
            self._restart()
            raise MalformedRow("width", f"a row has {len(values)} values, expected {self._width}")
        if not all(math.isfinite(v) for v in values):
            self._restart()
            raise MalformedRow("nan", "a row holds NaN or infinity")
        self._width = len(values)
        gap = self._gap(stamp)
        if stamp is not None:
            self._stamps.append(stamp)
            self._last_ts = stamp
        window = self._rows.push(values)
        if gap:
            raise MalformedRow("gap", gap)
        if window is not None:
            self._check_rate()
        return window

    def _timestamp(self, values: list[float]) -> tuple[float, list[float]]:
        if self.channels is not None and len(values) == self.channels:
            self._restart()
            raise MalformedRow("missing_timestamp", f"a row has {len(values)} values and no timestamp first")
        stamp, rest = values[0], values[1:]
        if not math.isfinite(stamp):
            self._restart()
            raise MalformedRow("missing_timestamp", "a row's timestamp is NaN or infinite")
        if self._last_ts is not None and stamp <= self._last_ts:
            previous = self._last_ts
            self._restart()
            self._last_ts = stamp  # follow a clock that was reset, from the next row on
            raise MalformedRow("out_of_order", f"a row's time {stamp:.6g} s is not after the previous {previous:.6g} s")
        return stamp, rest

    def _gap(self, stamp: float | None) -> str:
        if stamp is None or self._last_ts is None or self.recipe is None:
            return ""
        step = stamp - self._last_ts
        if step <= self.checks.max_gap_periods / self.recipe.sample_rate_hz:
            return ""
        self._restart()
        return f"{step:.3g} s between rows, over {self.checks.max_gap_periods:g} sample periods: rows are missing"

    def _check_rate(self) -> None:
        if self.recipe is None or len(self._stamps) < self._size:
            return
        span = self._stamps[-1] - self._stamps[0]
        rate = (self._size - 1) / span if span > 0 else math.inf
        if abs(rate / self.recipe.sample_rate_hz - 1.0) > self.checks.rate_tolerance:
            raise MalformedRow(
                "rate", f"a window at {rate:.4g} Hz, the model was trained at {self.recipe.sample_rate_hz:g} Hz"
            )

    def _restart(self) -> None:
        self._rows = RowWindow(self._rows.window, self._rows.stride)
        self._stamps.clear()
        self._last_ts = None
        self.restarts += 1
