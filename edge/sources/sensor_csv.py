"""Numeric sensor rows from a CSV file, a FIFO or stdin ('-'), windowed into float32 [T, C] frames.

Rows are checked before windowing (edge.sensor.input_check): a malformed row is refused, counted by kind and
restarts the window, and each burst of them is logged in one line. A non-numeric first line is a header.
With a model's window recipe (`set_recipe`) the recipe's window, hop, channel count and sample rate apply.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from edge.errors import SourceError
from edge.sensor.config import InputCheckConfig
from edge.sensor.input_check import BurstReport, MalformedRow, SensorWindower
from edge.sources.base import Frame
from shared.window_recipe import WindowRecipe

log = logging.getLogger(__name__)

STDIN = "-"


def parse_row(line: str) -> list[str] | None:
    """Cells of one CSV line; None for a blank line (numbers are checked by the windower)."""
    line = line.strip()
    if not line:
        return None
    return [cell.strip() for cell in line.split(",")]


def _is_header(cells: list[str]) -> bool:
    try:
        [float(c) for c in cells]
    except ValueError:
        return True
    return False


class SensorCsvSource:
    """Each frame is `window` consecutive checked rows (H = window, W = channels); bad rows are refused and counted."""

    live = False

    def __init__(self, path: Path | str, *, window: int, stride: int, checks: InputCheckConfig | None = None,
                 recipe: WindowRecipe | None = None) -> None:
        self.path = str(path)
        self.name = "sensor_csv:stdin" if self.path == STDIN else f"sensor_csv:{self.path}"
        self.skipped = 0
        self.checks = checks or InputCheckConfig()
        self.recipe = recipe
        self.report = BurstReport(self.name, self.checks.burst_report_s, logger=log)
        self._window_args = (window, stride)
        self._windows = SensorWindower(window, stride, self.checks, recipe)
        self._pending_recipe: tuple[WindowRecipe | None] | None = None
        self._recipe_lock = threading.Lock()
        self._stream: TextIO | None = None
        self._owned = False
        self._index = 0
        self._line_no = 0
        self._interrupted = False

    def open(self) -> None:
        """Open the file; a FIFO is opened by the first read, since that blocks until a writer appears."""
        self.close()
        self._interrupted = False
        self._windows = SensorWindower(*self._window_args, self.checks, self.recipe)
        self._line_no = 0
        if self.path == STDIN:
            self._stream = sys.stdin
            return
        p = Path(self.path)
        if not p.exists():
            raise SourceError(f"sensor CSV {self.path} does not exist")
        if p.is_dir():
            raise SourceError(f"sensor CSV {self.path} is a directory, not a file or FIFO")
        if not p.is_fifo():
            self._stream = self._open_file()

    def read(self) -> Frame | None:
        """The next full window; None at end of file (or when the FIFO's writer closes)."""
        if self._stream is None:
            self._stream = self._open_file()
        while not self._interrupted:
            try:
                line = self._stream.readline()
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed under us
                raise SourceError(f"cannot read {self.name}: {exc}") from exc
            if not line:
                self.report.flush()
                return None
            self._line_no += 1
            self._apply_recipe()
            row = parse_row(line)
            if row is None or (self._line_no == 1 and _is_header(row)):
                continue
            try:
                window = self._windows.push(row)
            except MalformedRow as exc:
                self.report.record(exc.kind, f"line {self._line_no}: {exc}")
                self.skipped = self.report.total
                continue
            self.report.ok()
            if window is not None:
                index = self._index
                self._index += 1
                return Frame(index, window, time.perf_counter(), self.name)
        return None

    def interrupt(self) -> None:
        """Stop after the line being read; a read blocked on an idle pipe still waits for that line."""
        self._interrupted = True

    def set_recipe(self, recipe: WindowRecipe | None) -> None:
        """Window for this model from the next row on (safe from any thread); None: the config's window/stride."""
        with self._recipe_lock:
            self._pending_recipe = (recipe,)

    def _apply_recipe(self) -> None:
        with self._recipe_lock:
            pending, self._pending_recipe = self._pending_recipe, None
        if pending is not None and pending[0] != self.recipe:
            self.recipe = pending[0]
            self._windows = SensorWindower(*self._window_args, self.checks, self.recipe)

    def close(self) -> None:
        """Close the file (never stdin); a pending burst report is logged."""
        self.report.flush()
        if self._stream is not None and self._owned:
            self._stream.close()
        self._stream = None
        self._owned = False

    def _open_file(self) -> TextIO:
        try:
            stream = open(self.path, encoding="utf-8", errors="replace")  # noqa: SIM115 - held across reads
        except OSError as exc:
            raise SourceError(f"cannot open sensor CSV {self.path}: {exc.strerror}") from exc
        self._owned = True
        return stream
