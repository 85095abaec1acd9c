"""A stream's small ring of frames waiting for inference: keeps the newest, counts what it skips and drops as stale.

Pure data: no lock of its own. The stream's capture thread and the scheduler share one lock (the doorbell), so a
scheduler can look at every stream's ring under a single acquisition.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from edge.sources.base import Frame

Policy = Literal["latest", "fifo"]


class FrameRing:
    """At most `size` frames, oldest first; 'latest' overwrites the oldest when full, 'fifo' reports it is full."""

    def __init__(self, size: int, policy: Policy = "latest", stale_s: float | None = 0.5) -> None:
        if size < 1:
            raise ValueError(f"a ring holds at least one frame, not {size}")
        self.size = size
        self.policy = policy
        self.stale_s = stale_s
        self._frames: deque[Frame] = deque()
        # Overwritten before inference ('latest'), and dropped for waiting past the staleness cap.
        self.skipped = 0
        self.stale = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def full(self) -> bool:
        """No room without overwriting: a 'fifo' producer waits."""
        return len(self._frames) >= self.size

    def put(self, frame: Frame) -> None:
        """Add the newest frame; when full, the oldest waiting frame is overwritten and counted as skipped."""
        if len(self._frames) >= self.size:
            self._frames.popleft()
            self.skipped += 1
        self._frames.append(frame)

    def take(self, now: float) -> Frame | None:
        """The oldest frame still fresh at `now` (perf_counter seconds); older ones are dropped and counted."""
        frames, stale_s = self._frames, self.stale_s
        while frames:
            frame = frames.popleft()
            if stale_s is None or now - frame.captured_at <= stale_s:
                return frame
            self.stale += 1
        return None

    def ready(self, now: float) -> bool:
        """A fresh frame waits (stale ones at the front are dropped and counted on the way)."""
        frames, stale_s = self._frames, self.stale_s
        while frames and stale_s is not None and now - frames[0].captured_at > stale_s:
            frames.popleft()
            self.stale += 1
        return bool(frames)

    def clear(self) -> None:
        """Forget waiting frames (the stream is being closed); they count as skipped."""
        self.skipped += len(self._frames)
        self._frames.clear()
