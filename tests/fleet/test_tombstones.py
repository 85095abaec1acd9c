"""A removed device stays removed: its retained status and state (which the fleet's broker user may not clear under
the shipped ACL) do not register it again, until a live message from it says it really is back. SQLite and
PostgreSQL."""

from __future__ import annotations

import json

from fleet.db.store import FleetStore
from fleet.ingest import Ingest, Message
from tests.fleet.conftest import Clock
from tests.fleet.poison import state_doc, telemetry_doc

BASE = "edgeferry/lab"


def _retained(device: str, now: int) -> list[Message]:
    return [(f"{BASE}/{device}/status", b"online", True, now),
            (f"{BASE}/{device}/state", json.dumps(state_doc(device)).encode(), True, now)]


def test_retained_messages_of_a_removed_device_do_not_bring_it_back(store: FleetStore, clock: Clock) -> None:
    Ingest(store).process(_retained("gone", clock()) + _retained("cam-1", clock()))
    assert store.remove_device("gone")
    clock.advance(5)
    # A restarted worker gets the broker's retained messages again, the removed device's among them.
    restarted = Ingest(store)
    restarted.process(_retained("gone", clock()) + _retained("cam-1", clock()))
    assert store.devices.get("gone") is None
    assert [r.device_id for r in store.list_devices()] == ["cam-1"]
    assert store.tombstones.among(["gone", "cam-1"]) == {"gone"}


def test_a_live_message_lifts_the_tombstone(store: FleetStore, clock: Clock) -> None:
    Ingest(store).process(_retained("gone", clock()))
    store.remove_device("gone")
    clock.advance(5)
    ingest = Ingest(store)
    live = (f"{BASE}/gone/telemetry", json.dumps(telemetry_doc("gone", 1)).encode(), False, clock())
    # The retained ones before it in the same batch are still the removed device's; what follows is the new one.
    ingest.process([*_retained("gone", clock()), live, (f"{BASE}/gone/status", b"online", False, clock())])
    rec = store.device("gone")
    assert rec.status == "online" and rec.groups == ()
    assert len(store.telemetry_window("gone", 0, 2**62)) == 1
    assert store.tombstones.among(["gone"]) == set()
    # Back for good: its retained messages count again after the next restart.
    Ingest(store).process(_retained("gone", clock()))
    assert store.device("gone").groups == ("north",)


def test_an_empty_retained_clear_is_no_sign_of_life(store: FleetStore, clock: Clock) -> None:
    Ingest(store).process(_retained("gone", clock()))
    store.remove_device("gone")
    # What an operator's clear looks like to a subscribed worker: empty, not retained on delivery.
    Ingest(store).process([(f"{BASE}/gone/status", b"", False, clock()), (f"{BASE}/gone/state", b"", False, clock())])
    assert store.tombstones.among(["gone"]) == {"gone"}
    Ingest(store).process(_retained("gone", clock()))
    assert store.devices.get("gone") is None


def test_removing_records_when(store: FleetStore, clock: Clock) -> None:
    Ingest(store).process(_retained("gone", clock()))
    store.remove_device("gone")
    assert store.tombstones.removed_at("gone") == clock()
    assert store.tombstones.removed_at("cam-1") is None
