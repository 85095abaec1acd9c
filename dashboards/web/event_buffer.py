"""The latest results of every device, bounded, kept for the device page and the class alert rules. No I/O."""

from __future__ import annotations

import threading
from collections import deque

from pydantic import ValidationError

from dashboards.web.ports import EventRow
from shared.payloads import EventPayload

PER_DEVICE = 50
MAX_DEVICES = 20_000


class EventBuffer:
    """Thread-safe: the MQTT thread adds, the web app's threads read."""

    def __init__(self, per_device: int = PER_DEVICE, max_devices: int = MAX_DEVICES) -> None:
        self._per_device = per_device
        self._max_devices = max_devices
        self._by_device: dict[str, deque[EventRow]] = {}
        self._lock = threading.Lock()
        self.malformed = 0

    def add_payload(self, device_id: str, payload: bytes) -> None:
        """One message from edgeferry/<fleet>/<device>/events; a malformed one is counted and ignored."""
        try:
            event = EventPayload.model_validate_json(payload)
        except ValidationError:
            self.malformed += 1
            return
        det = event.after or event.before
        self.add(EventRow(device_id=device_id, ts_ms=event.ts, type=event.type,
                          label=det.label if det else None, score=det.score if det else None,
                          frame=det.frame if det else None, model_version=det.model_version if det else None))

    def add(self, row: EventRow) -> None:
        """Keep one result (the oldest of that device falls out when it has too many)."""
        with self._lock:
            q = self._by_device.get(row.device_id)
            if q is None:
                if len(self._by_device) >= self._max_devices:
                    return
                q = self._by_device[row.device_id] = deque(maxlen=self._per_device)
            q.append(row)

    def events(self, device_id: str | None, since_ms: int, limit: int) -> list[EventRow]:
        """Newest first."""
        with self._lock:
            pools = [self._by_device.get(device_id, deque())] if device_id is not None else self._by_device.values()
            hits = [e for q in pools for e in q if e.ts_ms >= since_ms]
        hits.sort(key=lambda e: e.ts_ms, reverse=True)
        return hits[:limit]
