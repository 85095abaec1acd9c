"""Gathers ready frames across streams into one batch: at most one frame per stream, round-robin, under a deadline.

Round-robin: each gather starts with the stream after the last one served, so with more streams than the batch
holds no stream starves. Deadline: once one frame is ready the batch waits at most `wait_s` for other streams'
frames, and not at all when no other stream could deliver (a lone camera is never held for a full batch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge.sources.base import Frame
from edge.streams.ring import FrameRing


class Lane(Protocol):
    """One stream as the scheduler sees it: its name, its ring, and whether its capture ended."""

    name: str
    ring: FrameRing
    ended: bool


@dataclass(frozen=True, slots=True)
class Taken:
    """A frame the scheduler took for a batch, from which stream and when (perf_counter seconds)."""

    lane: Lane
    frame: Frame
    taken_at: float


class BatchScheduler:
    """Called from one thread (the frame thread); captures put frames under the same doorbell lock.

    `room` (a condition on the doorbell's lock; the doorbell itself when not given) is notified after each gather,
    for 'fifo' captures waiting for room in their rings.
    """

    def __init__(
        self,
        lanes: Sequence[Lane],
        doorbell: threading.Condition,
        max_size: int,
        wait_s: float,
        clock: Callable[[], float] = time.perf_counter,
        room: threading.Condition | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"a batch holds at least one frame, not {max_size}")
        self.lanes = list(lanes)
        self.max_size = max_size
        self.wait_s = wait_s
        self._doorbell = doorbell
        self._room = doorbell if room is None else room
        self._clock = clock
        self._next = 0

    def set_lanes(self, lanes: Sequence[Lane]) -> None:
        """Serve these streams from the next gather on (the frame thread, holding the doorbell: streams changed)."""
        self.lanes = list(lanes)
        if self._next >= len(self.lanes):
            self._next = 0

    @property
    def finished(self) -> bool:
        """Every stream ended and nothing waits."""
        with self._doorbell:
            return all(lane.ended and not len(lane.ring) for lane in self.lanes)

    def waiting(self) -> bool:
        """Some stream has a frame waiting now (the batch just gathered leaves a backlog)."""
        with self._doorbell:
            now = self._clock()
            return any(lane.ring.ready(now) for lane in self.lanes)

    def gather(self, timeout: float) -> list[Taken]:
        """Up to max_size frames from distinct streams; empty when none was ready within `timeout` seconds."""
        doorbell, clock = self._doorbell, self._clock
        with doorbell:
            if not self._any_ready(clock()):
                doorbell.wait_for(lambda: self._any_ready(clock()) or self._all_ended(), timeout)
            taken: list[Taken] = []
            self._take(taken, clock())
            if not taken:
                return taken
            deadline = clock() + self.wait_s
            while len(taken) < self.max_size and self._others_may_deliver(taken):
                left = deadline - clock()
                if left <= 0:
                    break
                doorbell.wait(left)
                self._take(taken, clock())
            self._room.notify_all()  # 'fifo' captures waiting for room
        last = self.lanes.index(taken[-1].lane)
        self._next = (last + 1) % len(self.lanes)
        return taken

    def _take(self, taken: list[Taken], now: float) -> None:
        """Add one ready frame per stream not yet in the batch, in round-robin order from self._next."""
        lanes, n = self.lanes, len(self.lanes)
        have = {id(t.lane) for t in taken}
        for i in range(n):
            if len(taken) >= self.max_size:
                return
            lane = lanes[(self._next + i) % n]
            if id(lane) in have:
                continue
            frame = lane.ring.take(now)
            if frame is not None:
                taken.append(Taken(lane, frame, now))
                have.add(id(lane))

    def _any_ready(self, now: float) -> bool:
        return any(lane.ring.ready(now) for lane in self.lanes)

    def _all_ended(self) -> bool:
        return all(lane.ended for lane in self.lanes)

    def _others_may_deliver(self, taken: list[Taken]) -> bool:
        """Another running stream could still add a frame to this batch."""
        have = {id(t.lane) for t in taken}
        return self.wait_s > 0 and any(id(lane) not in have and not lane.ended for lane in self.lanes)
