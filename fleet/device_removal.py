"""Removing a device: its retained topics on the broker are cleared, then its rows in the fleet database go.

Shared by `edgeferry fleet devices remove` and the web app (operator role), so both forget the same things.
Clearing first means a worker's ingest never sees the old retained state again after a restart; a device that
still runs registers again with its next message (revoke its broker user to keep it out). Clearing publishes in
the device's name: the shipped ACL lets only the operators' broker user (edgeferry-ops) do that.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.db.store import FleetStore
from fleet.publisher import Publisher
from shared.names import check_ident
from shared.topics import DeviceTopics


@dataclass(frozen=True)
class Removal:
    """What removing one device did."""

    device_id: str
    known: bool
    cleared: tuple[str, ...]


def retained_topics(fleet: str, device_id: str) -> tuple[str, ...]:
    """The device's topics that hold retained messages: status, state, benchmark and its desired state."""
    t = DeviceTopics(fleet, device_id)
    return (t.status, t.state, t.benchmark, t.desired)


def remove_device(store: FleetStore, publisher: Publisher, device_id: str) -> Removal:
    """Clear the device's retained topics (an empty retained payload each), then delete its rows; BrokerError
    (nothing deleted) when the broker does not take a clear, so a later retry finishes the job."""
    check_ident(device_id, "device id")
    topics = retained_topics(store.fleet, device_id)
    for topic in topics:
        publisher.publish(topic, b"", retain=True)
    known = store.remove_device(device_id)
    return Removal(device_id, known, topics)
