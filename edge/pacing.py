"""How a frame reader keeps time: its max_fps slots, and the doubling delay between reconnect attempts.

One copy for every reader (the single source's Capture, each stream's StreamCapture, the frame loop's first open), so
a camera is paced and retried alike whether it is the agent's only source or one of its streams.
"""

from __future__ import annotations

import threading
import time

from edge.sources.base import Frame


class Backoff:
    """Retry delays of one reader (or supervised thread): from the first delay (a source's reconnect_backoff_s),
    doubled per failure up to max_s (its reconnect_max_s), reset by a success."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max(max_s, initial_s)
        self.delay_s = initial_s

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the current delay, then double it for the next failure; True when stop was set meanwhile."""
        if stop.wait(self.delay_s):
            return True
        self.delay_s = min(self.delay_s * 2, self.max_s)
        return False

    def reset(self) -> None:
        """A frame came (the body ran long enough): the next failure waits the initial delay again."""
        self.delay_s = self.initial_s


class Pacer:
    """max_fps for one reader: a live frame that comes too soon is discarded and counted in `throttled` (the one
    count its reader's figures read), a file frame waits for its slot and is 'captured' when released, like a
    camera's."""

    def __init__(self, max_fps: float | None, stop: threading.Event) -> None:
        self.period_s = 1.0 / max_fps if max_fps else None
        self._stop = stop
        # Live frames discarded for coming too soon (written by the reader's thread only).
        self.throttled = 0
        self._next_slot: float | None = None
        # The last frame passed waited for its slot: the reader was ahead of the rate (run-to-completion reads it).
        self.waited = False

    def admit(self, frame: Frame, live: bool) -> bool:
        """Whether the frame goes on now (after waiting for its slot); False: throttled, or stop was set."""
        self.waited = False
        period = self.period_s
        if period is None:
            return True
        now = time.perf_counter()
        slot = self._next_slot
        if slot is not None and now < slot:
            if live:
                self.throttled += 1
                return False
            if self._stop.wait(slot - now):
                return False
            self.waited = True
            now = time.perf_counter()
            frame.captured_at = now
        self._next_slot = now + period if slot is None else max(slot + period, now)
        return True
