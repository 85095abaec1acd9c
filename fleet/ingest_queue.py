"""The ingest queue: bounded in bytes, one lane per device taken in turn, so one device's flood sheds only its own.

paho's network thread `put`s; the writer `take`s a batch round-robin over the devices with something queued.
A message is shed (counted against its device) when its device's lane is over its byte budget or the whole
queue is over its byte or message bound; honest devices, far below their budget, are still admitted while one floods.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_DEVICE_BYTES = 4 * 1024 * 1024
# Messages queued at most, whatever their bytes (each costs ~0.5 KiB of Python objects beyond its payload).
DEFAULT_MAX_MESSAGES = 200_000
# Topic and bookkeeping overhead counted per message, so a flood of empty messages is bounded too.
MESSAGE_OVERHEAD = 256


@dataclass(frozen=True)
class Queued:
    """One message waiting: its topic, payload, whether it was retained, and when the fleet received it."""

    topic: str
    payload: bytes
    retained: bool
    received_ms: int

    @property
    def size(self) -> int:
        """Bytes it holds in the queue (payload, topic and a fixed overhead)."""
        return len(self.payload) + len(self.topic) + MESSAGE_OVERHEAD


class FairQueue:
    """Per-device lanes under one byte bound; thread-safe."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, device_bytes: int = DEFAULT_DEVICE_BYTES,
                 max_messages: int = DEFAULT_MAX_MESSAGES) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.device_bytes = min(device_bytes, max_bytes)
        self._lanes: OrderedDict[str, deque[Queued]] = OrderedDict()
        self._lane_bytes: dict[str, int] = {}
        self._bytes = 0
        self._count = 0
        self._shed: dict[str, int] = {}
        self._cond = threading.Condition()

    def put(self, key: str, item: Queued) -> bool:
        """Queue item in key's lane; False (and one more shed for key) when over its budget or a bound."""
        size = item.size
        with self._cond:
            lane_bytes = self._lane_bytes.get(key, 0)
            if (lane_bytes + size > self.device_bytes or self._bytes + size > self.max_bytes
                    or self._count >= self.max_messages):
                self._shed[key] = self._shed.get(key, 0) + 1
                return False
            self._lanes.setdefault(key, deque()).append(item)
            self._lane_bytes[key] = lane_bytes + size
            self._bytes += size
            self._count += 1
            if self._count == 1:  # the writer waits only on an empty queue
                self._cond.notify()
            return True

    def take(self, max_items: int, max_bytes: int, timeout_s: float) -> list[tuple[str, Queued]]:
        """Up to max_items (and about max_bytes) messages, one per device in turn; waits up to timeout_s for one."""
        with self._cond:
            if not self._count and timeout_s > 0:
                self._cond.wait_for(lambda: self._count > 0, timeout_s)
            out: list[tuple[str, Queued]] = []
            taken_bytes = 0
            while self._lanes and len(out) < max_items and (not out or taken_bytes < max_bytes):
                key, lane = next(iter(self._lanes.items()))
                item = lane.popleft()
                self._lane_bytes[key] -= item.size
                self._bytes -= item.size
                self._count -= 1
                taken_bytes += item.size
                out.append((key, item))
                if lane:
                    self._lanes.move_to_end(key)  # the next device's turn
                else:
                    del self._lanes[key]
                    del self._lane_bytes[key]
            return out

    def take_shed(self) -> dict[str, int]:
        """Messages shed per device since the last call (the writer books them on the devices' records)."""
        with self._cond:
            shed, self._shed = self._shed, {}
            return shed

    def __len__(self) -> int:
        with self._cond:
            return self._count

    @property
    def bytes(self) -> int:
        """Bytes queued now."""
        with self._cond:
            return self._bytes
