"""The one interface every frame or sensor source implements, and the frame it yields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(slots=True)
class Frame:
    """One captured image or sensor window; slots keep the per-frame object small and cheap."""

    index: int
    image: np.ndarray
    captured_at: float
    source: str
    # Filled by the capture thread when it preprocesses ahead of the frame loop (see Capture's `prepare`).
    tensor: np.ndarray | None = None
    prepared_for: int = 0
    prep_s: float = 0.0


class FrameSource(Protocol):
    """A camera, file, stream or sensor feed; `read` returns None only at a real end of stream."""

    name: str
    # True for cameras and streams: frames arrive in real time, so a rate cap discards instead of pausing.
    live: bool
    # Items that could not be decoded and were skipped (corrupt images, malformed rows).
    skipped: int

    def open(self) -> None:
        """Open or reopen the source; SourceError with a clear message when it cannot be opened."""
        ...

    def read(self) -> Frame | None:
        """The next frame, or None at end of stream; SourceError on a read failure worth a reconnect."""
        ...

    def interrupt(self) -> None:
        """Wake a read() blocked in another thread so it returns soon; safe from any thread."""
        ...

    def close(self) -> None:
        """Release the device or file; called by the thread that reads."""
        ...
