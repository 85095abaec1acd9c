"""A frame source the test releases frame by frame, so which frames found the reader idle is decided, not timed."""

from __future__ import annotations

import threading
import time

import numpy as np

from edge.sources.base import Frame


class GatedSource:
    """Yields `images` in order; read() blocks until the test release()s a frame and records whether it had to wait."""

    name = "gated"
    live = True
    skipped = 0

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images = images
        self._gate = threading.Semaphore(0)
        self._stopped = False
        self._index = 0
        # The last read() found no released frame and waited: what the capture thread's clocks would tell.
        self.last_read_waited = False

    def open(self) -> None:
        """Nothing to open."""

    def read(self) -> Frame | None:
        """The next released frame; None after the last image or once interrupted."""
        if self._index >= len(self.images):
            return None
        self.last_read_waited = not self._gate.acquire(blocking=False)
        if self.last_read_waited:
            self._gate.acquire()
        if self._stopped:
            return None
        index = self._index
        self._index += 1
        return Frame(index, self.images[index], time.perf_counter(), self.name)

    def release(self, frames: int = 1) -> None:
        """Let `frames` more frames be read."""
        self._gate.release(frames)

    def interrupt(self) -> None:
        """End a blocked read."""
        self._stopped = True
        self._gate.release(len(self.images) + 1)

    def close(self) -> None:
        """Nothing to close."""
