"""Desired state to devices: per group with per-device overrides, published retained and signed to each device's
`desired` topic, so a device that was offline converges when it returns. Republished only when it changes.

An entry names a version or a pointer channel. A device-scope entry a rollout set to move a device forward marks
the device a canary in its desired state, so the device runs the shadow check where it can afford it."""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fleet.db.desired import DesiredEntry, Published
from fleet.db.store import FleetStore
from fleet.publisher import Publisher
from fleet.registry import DeviceRecord
from shared.desired_state import DesiredState, sign_desired
from shared.signing import key_id
from shared.topics import DeviceTopics

log = logging.getLogger(__name__)


def desired_for(record: DeviceRecord, entries: list[DesiredEntry]) -> DesiredEntry | None:
    """What one device should run: its own override, else the most recently set entry of one of its groups."""
    own = [e for e in entries if e.scope == "device" and e.name == record.device_id]
    if own:
        return own[0]
    mine = [e for e in entries if e.scope == "group" and e.name in record.groups]
    return max(mine, key=lambda e: (e.set_ms, e.name)) if mine else None


def converged(record: DeviceRecord, entry: DesiredEntry | None) -> bool | None:
    """Whether the device serves its desired model version (or follows its desired channel); None when nothing is
    desired for it."""
    if entry is None:
        return None
    if entry.channel is not None:
        return record.model_name == entry.model and record.channel == entry.channel
    return record.model_name == entry.model and record.model_version == entry.version


def is_canary(entry: DesiredEntry) -> bool:
    """A rollout's forward move of one device (not its group's final entry, not a rollback)."""
    return (entry.scope == "device" and entry.rollout_id is not None and not entry.allow_downgrade
            and entry.version is not None)


def _same(pub: Published | None, entry: DesiredEntry) -> bool:
    return pub is not None and (pub.model, pub.version, pub.channel, pub.allow_downgrade, pub.rollout_id) == (
        entry.model, entry.version, entry.channel, entry.allow_downgrade, entry.rollout_id)


class DesiredPublisher:
    """Signs and publishes each device's desired state with the fleet key, sequence from the database."""

    def __init__(self, store: FleetStore, publisher: Publisher, key: Ed25519PrivateKey) -> None:
        self.store = store
        self.publisher = publisher
        self.key = key
        self.key_id = key_id(key.public_key())

    def publish(self, device_id: str, entry: DesiredEntry, force: bool = False) -> Published | None:
        """Publish entry to the device (retained) unless that exact state is already out; returns what was sent."""
        if not force and _same(self.store.desired.published(device_id), entry):
            return None
        now = self.store.clock()
        seq = self.store.commands.next_seq(self.key_id, now)
        state = DesiredState(fleet=self.store.fleet, device_id=device_id, model=entry.model, version=entry.version,
                             channel=entry.channel, allow_downgrade=entry.allow_downgrade,
                             rollout_id=entry.rollout_id, canary=is_canary(entry), issued_at_ms=now, seq=seq)
        self.publisher.publish(DeviceTopics(self.store.fleet, device_id).desired, sign_desired(state, self.key),
                               retain=True)
        pub = Published(device_id, entry.model, entry.version, entry.allow_downgrade, entry.rollout_id, seq, now,
                        entry.channel)
        self.store.desired.mark_published(pub)
        return pub

    def publish_device(self, device_id: str) -> None:
        """Publish what the desired table now says for device_id; clear the retained message when nothing does."""
        rec = self.store.devices.get(device_id)
        entry = desired_for(rec, self.store.desired.all()) if rec is not None else None
        if entry is not None:
            self.publish(device_id, entry)
        elif self.store.desired.published(device_id) is not None:
            self.publisher.publish(DeviceTopics(self.store.fleet, device_id).desired, b"", retain=True)
            self.store.desired.forget_published(device_id)

    def reconcile(self) -> int:
        """Publish to every device whose desired state changed (a group it joined, a new group entry)."""
        entries = self.store.desired.all()
        if not entries:
            return 0
        sent = 0
        for rec in self.store.devices.all():
            entry = desired_for(rec, entries)
            if entry is not None and self.publish(rec.device_id, entry) is not None:
                sent += 1
        if sent:
            log.info("published desired state to %d device(s)", sent)
        return sent
