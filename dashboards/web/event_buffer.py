"""The latest results of every device, bounded, kept for the device page and the class alert rules. No I/O.

A noisy classifier sends one `update` per frame (its top-1 label flips) and `every` mode one `frame` per frame; the
device page wants what the camera is seeing, so beside the raw rows (the class alert rules read every one) a second
bounded list keeps every `new`/`end` and each run of `update`s or `frame`s as one row: the latest, with its count.
"""

from __future__ import annotations

import math
import threading
from collections import deque

from pydantic import ValidationError

from dashboards.errors import Refused
from dashboards.web.ports import EventRow
from shared.payloads import EventPayload

PER_DEVICE = 50
RUN_TYPES = frozenset({"update", "frame"})
MAX_DEVICES = 20_000
INT64 = 2**63


def event_row(device_id: str, payload: bytes) -> EventRow:
    """One message from edgeferry/<fleet>/<device>/events as a row; Refused when malformed or out of range."""
    try:
        event = EventPayload.model_validate_json(payload)
    except ValidationError as exc:
        raise Refused("event", f"not an event payload ({exc.error_count()} errors)") from exc
    except (ValueError, RecursionError) as exc:
        raise Refused("event", f"unreadable ({type(exc).__name__})") from exc
    det = event.after or event.before
    for d in (event.after, event.before):
        if d is None:
            continue
        if not (math.isfinite(d.score) and 0.0 <= d.score <= 1.0):
            raise Refused("event", f"score {d.score} is not a probability")
        if not (0 <= d.frame < INT64 and 0 <= d.model_version < INT64):
            raise Refused("event", "frame or model_version outside 0..2^63")
        if len(d.label) > 200:
            raise Refused("event", "label longer than 200 characters")
    if not 0 <= event.ts < INT64:
        raise Refused("event", "ts outside 0..2^63")
    return EventRow(device_id=device_id, ts_ms=event.ts, type=event.type,
                    label=det.label if det else None, score=det.score if det else None,
                    frame=det.frame if det else None, model_version=det.model_version if det else None)


def merge(last: EventRow | None, row: EventRow) -> EventRow | None:
    """The run `last` extended by row when both are per-frame rows (update/frame) of one device; None otherwise."""
    if last is None or row.type not in RUN_TYPES or last.type != row.type or last.device_id != row.device_id:
        return None
    return row.model_copy(update={"count": last.count + 1, "first_ts_ms": last.first_ts_ms or last.ts_ms})


class EventBuffer:
    """Thread-safe: the MQTT thread adds, the web app's threads read."""

    def __init__(self, per_device: int = PER_DEVICE, max_devices: int = MAX_DEVICES) -> None:
        self._per_device = per_device
        self._max_devices = max_devices
        self._by_device: dict[str, deque[EventRow]] = {}
        self._runs: dict[str, deque[EventRow]] = {}
        self._lock = threading.Lock()

    def add_payload(self, device_id: str, payload: bytes) -> None:
        """One message of a validated device id; Refused (nothing kept) when malformed."""
        self.add(event_row(device_id, payload))

    def add(self, row: EventRow) -> None:
        """Keep one result (the oldest of that device falls out when it has too many)."""
        with self._lock:
            q = self._by_device.get(row.device_id)
            if q is None:
                if len(self._by_device) >= self._max_devices:
                    return
                q = self._by_device[row.device_id] = deque(maxlen=self._per_device)
                self._runs[row.device_id] = deque(maxlen=self._per_device)
            q.append(row)
            runs = self._runs[row.device_id]
            merged = merge(runs[-1] if runs else None, row)
            if merged is not None:
                runs[-1] = merged
            else:
                runs.append(row)

    def events(self, device_id: str | None, since_ms: int, limit: int, collapsed: bool = False) -> list[EventRow]:
        """Newest first; collapsed: each run of per-frame rows as one (see merge)."""
        source = self._runs if collapsed else self._by_device
        with self._lock:
            pools = [source.get(device_id, deque())] if device_id is not None else list(source.values())
            hits = [e for q in pools for e in q if e.ts_ms >= since_ms]
        hits.sort(key=lambda e: e.ts_ms, reverse=True)
        return hits[:limit]
