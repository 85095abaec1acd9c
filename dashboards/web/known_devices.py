"""Whether a device id is in the registry, as of the live hub's last tick: a set built once per tick, so the MQTT
thread's check costs a lookup, never a database read."""

from __future__ import annotations

from typing import Any, Protocol


class _Hub(Protocol):
    @property
    def snapshot(self) -> Any: ...


class KnownDevices:
    """Callable: device id -> known; reads the followed hub's current FleetSnapshot (nothing is known before)."""

    def __init__(self, hub: _Hub | None = None) -> None:
        self._hub = hub
        self._from: object = None
        self._ids: frozenset[str] = frozenset()

    def follow(self, hub: _Hub) -> None:
        """Read this hub's snapshots from now on (the hub is built after the feed that asks)."""
        self._hub = hub

    def __call__(self, device_id: str) -> bool:
        if self._hub is None:
            return False
        snap = self._hub.snapshot
        if snap is not self._from:
            self._ids = frozenset(r.device_id for r in snap.rows)
            self._from = snap
        return device_id in self._ids
