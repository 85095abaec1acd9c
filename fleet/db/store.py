"""FleetStore: the one storage interface the control plane (and the rollout controller) is given."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine

from fleet.db.commands import CommandRepository
from fleet.db.desired import DesiredRepository
from fleet.db.devices import DeviceRepository
from fleet.db.engine import open_engine
from fleet.db.leases import LeaseRepository
from fleet.db.telemetry import TelemetryRepository
from fleet.errors import EmptyGroupError, UnknownDeviceError
from fleet.registry import DeviceRecord, Status, TelemetrySample


def wall_ms() -> int:
    """The fleet's clock, Unix ms."""
    return int(time.time() * 1000)


class FleetStore:
    """The repositories of one fleet over one engine; device records come back with their status as of now."""

    def __init__(self, engine: Engine, fleet: str, clock: Callable[[], int] = wall_ms) -> None:
        self.engine = engine
        self.fleet = fleet
        self.clock = clock
        self.devices = DeviceRepository(engine, fleet)
        self.telemetry = TelemetryRepository(engine, fleet)
        self.desired = DesiredRepository(engine, fleet)
        self.commands = CommandRepository(engine, fleet)
        self.leases = LeaseRepository(engine)

    @classmethod
    def open(cls, url: str, fleet: str, pool_size: int = 5, clock: Callable[[], int] = wall_ms) -> FleetStore:
        """Open (and create the schema of) the database at url."""
        return cls(open_engine(url, pool_size), fleet, clock)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def device(self, device_id: str) -> DeviceRecord:
        """One device as of now; UnknownDeviceError when it never reported."""
        rec = self.devices.get(device_id)
        if rec is None:
            raise UnknownDeviceError(f"device {device_id!r} has never reported to fleet {self.fleet!r}; "
                                     "'edgeferry fleet devices' lists the known ones")
        return rec.with_status_at(self.clock())

    def list_devices(
        self, group: str | None = None, status: Status | None = None, version: int | None = None
    ) -> list[DeviceRecord]:
        """Devices as of now, filtered by group, status and served version."""
        now = self.clock()
        out = [r.with_status_at(now) for r in self.devices.all()]
        return [r for r in out if (group is None or group in r.groups) and (status is None or r.status == status)
                and (version is None or r.model_version == version)]

    def group_members(self, group: str) -> list[DeviceRecord]:
        """Devices in a group (from their config or assigned here); EmptyGroupError when there are none."""
        members = self.list_devices(group=group)
        if not members:
            known = sorted({g for r in self.devices.all() for g in r.groups})
            raise EmptyGroupError(f"group {group!r} of fleet {self.fleet!r} has no devices"
                                  f" (groups: {', '.join(known) if known else 'none yet'})")
        return members

    def groups(self) -> dict[str, list[str]]:
        """Every group with its device ids."""
        out: dict[str, list[str]] = {}
        for r in self.devices.all():
            for g in r.groups:
                out.setdefault(g, []).append(r.device_id)
        return dict(sorted(out.items()))

    def telemetry_window(self, device_id: str, since_ms: int, until_ms: int) -> list[TelemetrySample]:
        """Raw samples of one device with since_ms <= ts < until_ms (device clock), oldest first."""
        return self.telemetry.window(device_id, since_ms, until_ms)
