"""Numeric sensor rows from a CSV file, a FIFO or stdin ('-'), windowed into float32 HxW frames."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from edge.errors import SourceError
from edge.sources.base import Frame
from edge.sources.windowing import RowWindow

log = logging.getLogger(__name__)

STDIN = "-"
_MAX_WARNINGS = 10


def parse_row(line: str) -> list[float] | None:
    """Numbers of one CSV line; None for a blank line; ValueError for text (a header, a typo)."""
    line = line.strip()
    if not line:
        return None
    return [float(cell) for cell in line.split(",")]


class SensorCsvSource:
    """Each frame is `window` consecutive rows (H = window, W = columns); bad rows are skipped and counted."""

    live = False

    def __init__(self, path: Path | str, *, window: int, stride: int) -> None:
        self.path = str(path)
        self.name = "sensor_csv:stdin" if self.path == STDIN else f"sensor_csv:{self.path}"
        self.skipped = 0
        self._window_args = (window, stride)
        self._windows = RowWindow(window, stride)
        self._stream: TextIO | None = None
        self._owned = False
        self._index = 0
        self._line_no = 0
        self._interrupted = False

    def open(self) -> None:
        """Open the file; a FIFO is opened by the first read, since that blocks until a writer appears."""
        self.close()
        self._interrupted = False
        self._windows = RowWindow(*self._window_args)
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
                return None
            self._line_no += 1
            try:
                row = parse_row(line)
                window = None if row is None else self._windows.push(row)
            except ValueError as exc:
                self._skip(f"line {self._line_no}: {exc}")
                continue
            if window is not None:
                index = self._index
                self._index += 1
                return Frame(index, window, time.perf_counter(), self.name)
        return None

    def interrupt(self) -> None:
        """Stop after the line being read; a read blocked on an idle pipe still waits for that line."""
        self._interrupted = True

    def close(self) -> None:
        """Close the file (never stdin)."""
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

    def _skip(self, why: str) -> None:
        self.skipped += 1
        if self.skipped <= _MAX_WARNINGS:
            log.warning("%s: skipping %s", self.name, why)
