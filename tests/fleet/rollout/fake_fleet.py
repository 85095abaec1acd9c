"""A fake fleet for controller tests: devices that obey the desired state they are published and report telemetry.

Devices are written into the real FleetStore (registry rows and telemetry samples) as ingest would; the publisher
keeps one retained desired state per device, which a device applies when it is online, as the agent does. Each
device names the group in its own state and is assigned to it in the control plane (as an operator would with
`fleet groups assign`), unless added with `assigned=False`: such a device only claims the group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from fleet.db.store import FleetStore
from fleet.registry import DeviceRecord, TelemetrySample, merged_groups
from tests.fleet.conftest import Clock

MODEL = "digits"
Behaviour = Literal["good", "slow", "unconfident", "drifting", "rejects", "silent", "crashloop", "flooder", "masker"]
# What the liars claim: 4e12 results of one class in every report (flooder), e2e p95 of 1e9 ms (masker).
FLOOD = 4_000_000_000_000
MASK_E2E_MS = 1e9
INTERVAL_S = 20


@dataclass
class FakeDevice:
    """One simulated device."""

    device_id: str
    groups: tuple[str, ...]
    version: int = 1
    online: bool = True
    behaviour: dict[int, Behaviour] = field(default_factory=dict)  # per version; default good
    rejects: int = 0
    refused: set[int] = field(default_factory=set)
    restarts: int = 0
    boot: int = 0


class FakePublisher:
    """The retained desired topic per device: the effective desired state at the time of each publish."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.retained: dict[str, tuple[int, bool] | None] = {}
        self.published: list[tuple[str, int | None]] = []
        self.fail_at: int | None = None  # crash (raise) on this publish call, before publishing
        self.calls = 0

    def publish_device(self, device_id: str) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise Crash(f"publish {self.calls}")
        entry = self.store.desired.get("device", device_id)
        if entry is None:
            rec = self.store.devices.get(device_id)
            groups = rec.groups if rec else ()
            entry = next((e for g in groups if (e := self.store.desired.get("group", g)) is not None), None)
        state = None if entry is None else (entry.version, entry.allow_downgrade)
        self.retained[device_id] = state
        self.published.append((device_id, None if state is None else state[0]))


class Crash(Exception):
    """Stands in for kill -9 at an injected point."""


class FakeFleet:
    """Devices of one group, a clock, and telemetry every INTERVAL_S seconds."""

    def __init__(self, store: FleetStore, clock: Clock, publisher: FakePublisher, group: str = "lab") -> None:
        self.store, self.clock, self.publisher, self.group = store, clock, publisher, group
        self.devices: dict[str, FakeDevice] = {}
        self._seq = 0

    def add(self, n: int, prefix: str = "cam", assigned: bool = True, **kw: object) -> list[str]:
        """Add n devices naming the group in their state, assigned to it here unless `assigned` is False."""
        ids = []
        for _ in range(n):
            d = FakeDevice(f"{prefix}-{len(self.devices):03d}", (self.group,), **kw)  # type: ignore[arg-type]
            self.devices[d.device_id] = d
            ids.append(d.device_id)
            self.store.telemetry.add(self._report(d))
            if assigned:
                self.store.devices.assign(d.device_id, self.group, self.clock())
        return ids

    def behave(self, version: int, behaviour: Behaviour, devices: list[str] | None = None) -> None:
        """How a version behaves on the given devices (all by default)."""
        for d in self.devices.values():
            if devices is None or d.device_id in devices:
                d.behaviour[version] = behaviour

    def _converge(self, d: FakeDevice) -> None:
        want = self.publisher.retained.get(d.device_id)
        if not d.online or want is None or want[0] == d.version:
            return
        version, downgrade = want
        if version < d.version and not downgrade:
            return  # anti-rollback floor
        if d.behaviour.get(version) == "rejects":
            if version not in d.refused:
                d.refused.add(version)
                d.rejects += 1  # the agent's smoke test refuses the package and counts it once
            return
        d.version = version

    def _record(self, d: FakeDevice, rec: DeviceRecord) -> DeviceRecord:
        now = self.clock()
        status = "online" if d.online else "offline"
        return replace(rec, reported_status=status, last_seen_ms=now if d.online else rec.last_seen_ms,
                       boot_id=f"boot-{d.boot}", restarts=d.restarts, model_name=MODEL, model_version=d.version,
                       reported_groups=d.groups, groups=merged_groups(d.groups, rec.assigned_groups),
                       telemetry_interval_s=INTERVAL_S, first_seen_ms=rec.first_seen_ms or now)

    def _figures(self, d: FakeDevice) -> tuple[dict[str, float], dict[str, int]]:
        how = d.behaviour.get(d.version, "good")
        figures = {
            "model_version": float(d.version), "e2e_ms_p95": 45.0 if how == "slow" else 20.0,
            "conf_mean": 0.55 if how == "unconfident" else 0.9,
            "low_conf_share": 0.4 if how == "unconfident" else 0.05, "results_window": 50.0,
            "thread_errors": 0.0, "cmd_errors": 0.0, "package_rejects": float(d.rejects), "fps": 5.0,
        }
        counts = {"0": 45, "1": 5} if how == "drifting" else {"0": 25, "1": 25}
        if how == "flooder":
            counts = {"0": FLOOD}
        if how == "masker":
            figures["e2e_ms_p95"] = MASK_E2E_MS
        return figures, counts

    def _report(self, d: FakeDevice) -> list[tuple[str, TelemetrySample, int]]:
        """Update the registry row; the telemetry sample to store (none when offline or silent)."""
        self._converge(d)
        if d.online and d.behaviour.get(d.version) == "crashloop":
            d.restarts += 1
            d.boot += 1
        self.store.devices.update(d.device_id, lambda rec: self._record(d, rec))
        if not d.online or d.behaviour.get(d.version) == "silent":
            return []
        figures, counts = self._figures(d)
        self._seq += 1
        now = self.clock()
        return [(d.device_id, TelemetrySample(now, figures, counts, f"boot-{d.boot}", self._seq), now)]

    def run(self, seconds: float, tick: object | None = None) -> None:
        """Advance time in telemetry intervals; every device reports, then tick() runs (a controller's)."""
        steps = max(1, int(seconds // INTERVAL_S))
        for _ in range(steps):
            self.clock.advance(INTERVAL_S)
            self.store.telemetry.add([row for d in self.devices.values() for row in self._report(d)])
            if callable(tick):
                tick()
