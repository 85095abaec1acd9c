"""Progress of one package download as a periodic log line (bytes, percent, rate), not one line per file.

A watcher thread samples the bytes on disk (completed files plus the size of the file being written, so it works
with every store and with resumed files) and logs a line every interval while the download lasts; a download that
ends before the first interval logs nothing but its one summary line. The agent is a daemon whose logs go to
journald or a file: plain lines, no terminal bars.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

PROGRESS_INTERVAL_S = 10.0


def _unit(total: int) -> tuple[float, str]:
    return (1e6, "MB") if total >= 1_000_000 else (1e3, "kB")


def progress_line(what: str, done: int, total: int, elapsed_s: float) -> str:
    """'downloading digits v3: 12.3 of 45.6 MB (27%), 2.5 MB/s, about 14 s left'."""
    scale, unit = _unit(total)
    done = min(done, total)
    percent = 100 * done / total if total > 0 else 100.0
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    line = (f"downloading {what}: {done / scale:.1f} of {total / scale:.1f} {unit} ({percent:.0f}%), "
            f"{rate / scale:.1f} {unit}/s")
    if rate > 0 and done < total:
        line += f", about {(total - done) / rate:.0f} s left"
    return line


def summary_line(what: str, total: int, elapsed_s: float) -> str:
    """'fetched digits v3: 45.6 MB in 18.2 s (2.5 MB/s)' (the caller appends who signed it)."""
    scale, unit = _unit(total)
    rate = total / elapsed_s if elapsed_s > 0 else 0.0
    return f"fetched {what}: {total / scale:.1f} {unit} in {elapsed_s:.1f} s ({rate / scale:.1f} {unit}/s)"


class DownloadProgress:
    """Context manager around a package's downloads: call file(path, size) as each file starts."""

    def __init__(
        self,
        what: str,
        total: int,
        logger: logging.Logger,
        *,
        interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.total = what, total
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._started = clock()
        self._done_files = 0
        self._current: tuple[Path, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DownloadProgress:
        self._started = self._clock()
        self._thread = threading.Thread(target=self._watch, name="download-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def file(self, path: Path, size: int) -> None:
        """A file starts downloading (the previous one is complete)."""
        with self._lock:
            if self._current is not None:
                self._done_files += self._current[1]
            self._current = (path, size)

    def done(self) -> int:
        """Bytes on disk so far: completed files plus what the current file holds (at most its size)."""
        with self._lock:
            done, current = self._done_files, self._current
        if current is not None:
            path, size = current
            with contextlib.suppress(OSError):  # not created yet: nothing of it is on disk
                done += min(size, path.stat().st_size)
        return done

    def elapsed_s(self) -> float:
        """Seconds since the downloads started."""
        return self._clock() - self._started

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._log.info("%s", progress_line(self.what, self.done(), self.total, self.elapsed_s()))
