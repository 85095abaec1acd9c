"""Operator actions on the fleet (direct deploy, rollback, group assignment): every check first, then the change.

An unknown device, an empty group or a version that is missing or fails verification in the store stops with one
line before anything is stored or sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.command_sender import CommandSender
from fleet.db.desired import DesiredEntry, Scope
from fleet.db.store import FleetStore
from fleet.desired import DesiredPublisher, desired_for
from fleet.desired_reach import check_desired_reach
from fleet.errors import FleetError, NothingToRollBackError
from fleet.package_check import PackageChecker
from fleet.publisher import Publisher
from fleet.registry import DeviceRecord
from shared.names import check_ident


@dataclass(frozen=True)
class DeployResult:
    """What a deploy or rollback changed."""

    model: str
    version: int | None
    scope: Scope
    name: str
    devices: tuple[str, ...]
    request_ids: tuple[str, ...]
    channel: str | None = None

    @property
    def target(self) -> str:
        """What was deployed, as messages say it: 'v7' or 'channel canary'."""
        return f"v{self.version}" if self.channel is None else f"channel {self.channel}"


def _scope(device: str | None, group: str | None) -> tuple[Scope, str]:
    if (device is None) == (group is None):
        raise FleetError("name exactly one target: --device DEVICE or --group GROUP")
    if device is not None:
        return "device", check_ident(device, "device id")
    return "group", check_ident(group or "", "group")


class FleetControl:
    """Direct changes an operator makes, each fully checked before it touches storage or the broker."""

    def __init__(self, store: FleetStore, packages: PackageChecker, publisher: Publisher, key: Ed25519PrivateKey,
                 expires_in_s: float = 300.0) -> None:
        self.store = store
        self.packages = packages
        self.desired = DesiredPublisher(store, publisher, key)
        self.sender = CommandSender(store, publisher, key, expires_in_s)

    def _targets(self, scope: Scope, name: str) -> list[DeviceRecord]:
        """The target devices' records, read once: the reach check and the publishing both use them."""
        if scope == "device":
            return [self.store.device(name)]
        return self.store.group_members(name)

    def deploy(self, model: str, version: int | None, device: str | None = None, group: str | None = None,
               allow_downgrade: bool = False, channel: str | None = None) -> DeployResult:
        """Set the desired version (or channel) of a device or group, publish it retained and signed, and for a
        version send a signed deploy too."""
        scope, name = _scope(device, group)
        check_ident(model, "model name")
        if (version is None) == (channel is None):
            raise FleetError("name exactly one of --model-version V (stay on V) and --channel C (follow channel C)")
        if channel is not None and allow_downgrade:
            raise FleetError("--allow-downgrade goes with --model-version: a channel never moves a device below a "
                             "version it activated")
        targets = self._targets(scope, name)
        check_desired_reach(model, targets)
        if channel is not None:
            self.packages.check_channel(model, channel)
        else:
            assert version is not None
            self.packages.check(model, version)
        entry = self.store.desired.set(DesiredEntry(scope, name, model, version, allow_downgrade,
                                                    set_ms=self.store.clock(), channel=channel))
        return self._apply(entry, targets)

    def rollback(self, device: str | None = None, group: str | None = None) -> DeployResult:
        """Return a device or group to the version desired before the current one (downgrade allowed)."""
        scope, name = _scope(device, group)
        targets = self._targets(scope, name)
        current = self.store.desired.get(scope, name)
        if current is None or current.previous_version is None or current.version is None:
            raise NothingToRollBackError(
                f"{scope} {name} has no earlier desired version to return to; deploy a version with "
                "'edgeferry fleet deploy --model M --version V'"
            )
        check_desired_reach(current.model, targets)  # a target may have come to serve it as a further model since
        self.packages.check(current.model, current.previous_version)
        entry = self.store.desired.set(DesiredEntry(
            scope, name, current.model, current.previous_version, allow_downgrade=True,
            previous_version=current.version, set_ms=self.store.clock(),
        ))
        return self._apply(entry, targets)

    def _apply(self, entry: DesiredEntry, targets: list[DeviceRecord]) -> DeployResult:
        entries = self.store.desired.all()
        reached: list[str] = []
        rids: list[str] = []
        for rec in targets:
            if desired_for(rec, entries) != entry:
                continue  # a device override wins over its group's entry
            dev = rec.device_id
            self.desired.publish(dev, entry, force=True)
            if entry.version is not None:  # a channel state alone moves the device: its pointer names the version
                rids.append(self.sender.send(dev, "deploy", {"version": entry.version, "pin": True,
                                                             "allow_downgrade": entry.allow_downgrade}).request_id)
            reached.append(dev)
        return DeployResult(entry.model, entry.version, entry.scope, entry.name, tuple(reached), tuple(rids),
                            entry.channel)



def assign_group(store: FleetStore, device: str, group: str, add: bool = True) -> bool:
    """Add (or take back) a control-plane group assignment of a known device; False when nothing changed."""
    store.device(check_ident(device, "device id"))
    check_ident(group, "group")
    return store.devices.assign(device, group, store.clock()) if add else store.devices.unassign(device, group)
