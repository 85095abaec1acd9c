"""Each device's last telemetry figures, as the fleet table and the alert rules read them. No I/O.

Only the metric table's figures are kept (shared.metrics.BY_NAME), each checked against its declared type and range:
a device can neither grow the buffer with fields of its own nor put a non-finite or huge number in front of the
operator. A message with one bad figure is refused whole, as the ingest refuses it.
"""

from __future__ import annotations

import threading
from collections import Counter

from dashboards.errors import Refused
from shared.metrics import BY_NAME
from shared.payloads import TelemetryPayload


def figures_in(doc: TelemetryPayload) -> dict[str, float] | None:
    """The declared figures of one parsed report; None for a replayed one; Refused when one is out of range."""
    if doc.replayed:
        return None  # a replayed message is history, not the device's figure now
    out: dict[str, float] = {}
    for name, value in (doc.model_extra or {}).items():
        metric = BY_NAME.get(name)
        if metric is None:
            continue  # not a figure (an agent newer than this table, or noise): never kept
        try:
            out[name] = metric.check(value)
        except ValueError as exc:
            raise Refused("telemetry", str(exc)) from exc
    return out


class FigureBuffer:
    """Thread-safe: the MQTT thread sets, the web app's threads read a copy."""

    def __init__(self, max_devices: int = 20_000) -> None:
        self._latest: dict[str, dict[str, float]] = {}
        self.max_devices = max_devices
        self._lock = threading.Lock()
        self._refused: Counter[str] = Counter()

    def count_refused(self, device_id: str) -> None:
        """One message of this device refused (by any buffer); bounded like the figures."""
        with self._lock:
            if device_id in self._refused or len(self._refused) < self.max_devices:
                self._refused[device_id] += 1

    def refused(self) -> dict[str, int]:
        """Device id -> messages the web app's feed refused from it."""
        with self._lock:
            return dict(self._refused)

    def add_report(self, device_id: str, doc: TelemetryPayload) -> None:
        """One telemetry report parsed (its device checked) by telemetry_report.parse_telemetry; Refused (nothing
        kept) when a figure is bad."""
        figures = figures_in(doc)
        if figures is None:
            return
        with self._lock:
            if device_id in self._latest or len(self._latest) < self.max_devices:
                self._latest[device_id] = figures

    def latest(self) -> dict[str, dict[str, float]]:
        """Device id -> its last figures."""
        with self._lock:
            return dict(self._latest)
