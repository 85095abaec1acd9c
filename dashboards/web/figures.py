"""Each device's last telemetry figures, as the fleet table and the alert rules read them. No I/O."""

from __future__ import annotations

import json
import math
import threading

from shared.payloads import Envelope

_ENVELOPE = frozenset(Envelope.model_fields)


class FigureBuffer:
    """Thread-safe: the MQTT thread sets, the web app's threads read a copy."""

    def __init__(self, max_devices: int = 20_000) -> None:
        self._latest: dict[str, dict[str, float]] = {}
        self._max = max_devices
        self._lock = threading.Lock()
        self.malformed = 0

    def add_payload(self, device_id: str, payload: bytes) -> None:
        """One telemetry message; numbers only (class_counts and the envelope are not figures)."""
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            self.malformed += 1
            return
        if not isinstance(doc, dict) or doc.get("replayed"):
            if not isinstance(doc, dict):
                self.malformed += 1
            return  # a replayed message is history, not the device's figure now
        figures = {k: float(v) for k, v in doc.items()
                   if k not in _ENVELOPE and isinstance(v, int | float) and not isinstance(v, bool)
                   and math.isfinite(v)}
        with self._lock:
            if device_id in self._latest or len(self._latest) < self._max:
                self._latest[device_id] = figures

    def latest(self) -> dict[str, dict[str, float]]:
        """Device id -> its last figures."""
        with self._lock:
            return dict(self._latest)
