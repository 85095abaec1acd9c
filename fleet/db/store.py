"""FleetStore: the one storage interface the control plane (and the rollout controller) is given."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Engine, delete

from fleet.db.commands import CommandRepository
from fleet.db.desired import DesiredRepository
from fleet.db.devices import DeviceRepository
from fleet.db.engine import open_engine
from fleet.db.leases import LeaseRepository
from fleet.db.schema import desired, desired_published
from fleet.db.streams import StreamRepository
from fleet.db.telemetry import TelemetryRepository
from fleet.db.tombstones import TombstoneRepository
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
        self.tombstones = TombstoneRepository(engine, fleet)
        self.streams = StreamRepository(engine, fleet)

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
        self, group: str | None = None, status: Status | None = None, version: int | None = None,
        limit: int | None = None, after: str | None = None,
    ) -> list[DeviceRecord]:
        """Devices as of now by id, filtered by group, status and served version; with `limit`, one page of at
        most that many whose ids sort after `after` (pass the last id of the previous page to get the next)."""
        now = self.clock()

        def keep(r: DeviceRecord) -> bool:
            return ((group is None or group in r.groups) and (status is None or r.status == status)
                    and (version is None or r.model_version == version))

        if limit is None:
            return [r for r in (rec.with_status_at(now) for rec in self.devices.all(after=after)) if keep(r)]
        out: list[DeviceRecord] = []
        chunk = max(limit, 100)
        while len(out) < limit:
            recs = self.devices.all(limit=chunk, after=after)
            out.extend(r for r in (rec.with_status_at(now) for rec in recs) if keep(r))
            if len(recs) < chunk:
                break
            after = recs[-1].device_id
        return out[:limit]

    def count_devices(self) -> int:
        """Devices the fleet's registry holds (every status)."""
        return self.devices.count()

    def remove_device(self, device_id: str) -> bool:
        """Forget a device: its record, group assignments, telemetry, history, per-stream figures, command log and
        device-scoped desired state, in one transaction, leaving a tombstone so its retained status and state (which the
        fleet's broker user may not clear) do not register it again; False when the registry did not know it. A
        device that still runs registers again with its next live message."""
        with self.engine.begin() as conn:
            known = self.devices.remove(device_id, conn)
            self.tombstones.add(device_id, self.clock(), conn)
            self.telemetry.remove_device(device_id, conn)
            self.streams.remove_device(device_id, conn)
            self.commands.remove_device(device_id, conn)
            conn.execute(delete(desired).where(desired.c.fleet == self.fleet, desired.c.scope == "device",
                                               desired.c.name == device_id))
            conn.execute(delete(desired_published).where(desired_published.c.fleet == self.fleet,
                                                         desired_published.c.device_id == device_id))
        return known

    def expire_devices(self, silent_for_ms: int) -> list[str]:
        """Remove the devices not heard from for silent_for_ms (a decommissioned or fake id); returns their ids."""
        gone = self.devices.silent_since(self.clock() - silent_for_ms)
        for device_id in gone:
            self.remove_device(device_id)
        return gone

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
