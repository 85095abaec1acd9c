"""Removing a device: its retained topics on the broker are cleared where the broker lets us, then its rows in the
fleet database go, leaving a tombstone.

Shared by `edgeferry fleet devices remove` and the web app (operator role), so both forget the same things and say
the same. Clearing publishes in the device's name: the shipped ACL lets only the operators' broker user
(edgeferry-ops) do that, and refuses the fleet's own user (PUBACK 135), which keeps no device's voice. A topic the
broker refuses to clear is kept there and reported; the tombstone makes ingest ignore its retained messages, so a
`fleet serve` restart does not register the device again, until the device publishes live (it really is back;
revoke its broker user to keep it out).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleet.db.store import FleetStore
from fleet.errors import PublishRefusedError
from fleet.publisher import Publisher
from shared.names import check_ident
from shared.topics import DeviceTopics

OPS_USER = "edgeferry-ops"


@dataclass(frozen=True)
class Removal:
    """What removing one device did: the retained topics cleared, and those the broker refused to clear."""

    device_id: str
    known: bool
    cleared: tuple[str, ...]
    kept: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line on the retained topics, honest about the ones still on the broker and who can clear them."""
        done = f"cleared {len(self.cleared)} retained topics"
        if not self.kept:
            return done
        return (f"{done}; the broker refused to clear {len(self.kept)} for this broker user and keeps them: "
                f"{' '.join(self.kept)} (the registry ignores them until the device publishes again); "
                f"{clear_hint(self.kept)}")


def clear_hint(topics: tuple[str, ...]) -> str:
    """How an operator clears retained topics the fleet's broker user may not write."""
    first = topics[0] if topics else "TOPIC"
    return (f"a broker user with the operators' rights ({OPS_USER}) can clear them, e.g. "
            f"'edgeferry fleet devices remove ... --set broker.username={OPS_USER}' or "
            f"'mosquitto_pub -u {OPS_USER} -r -n -t {first}' for each")


def retained_topics(fleet: str, device_id: str) -> tuple[str, ...]:
    """The device's topics that hold retained messages: status, state, benchmark and its desired state."""
    t = DeviceTopics(fleet, device_id)
    return (t.status, t.state, t.benchmark, t.desired)


def remove_device(store: FleetStore, publisher: Publisher, device_id: str) -> Removal:
    """Clear the device's retained topics (an empty retained payload each; a topic the broker refuses is kept and
    reported), then delete its rows leaving a tombstone. BrokerError (nothing deleted) when the broker cannot be
    reached or does not answer, so a later retry finishes the job."""
    check_ident(device_id, "device id")
    cleared, kept = clear_retained(publisher, store.fleet, device_id)
    known = store.remove_device(device_id)
    return Removal(device_id, known, cleared, kept)


def clear_retained(publisher: Publisher, fleet: str, device_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(cleared, kept): an empty retained payload on each retained topic; kept are those the broker refused."""
    cleared: list[str] = []
    kept: list[str] = []
    for topic in retained_topics(fleet, device_id):
        try:
            publisher.publish(topic, b"", retain=True)
        except PublishRefusedError:
            kept.append(topic)
        else:
            cleared.append(topic)
    return tuple(cleared), tuple(kept)
