"""A removed device stays removed: its retained status and state (which the fleet's broker user may not clear under
the shipped ACL) do not register it again, until a live message from it says it really is back. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleet.cli import load
from fleet.config import FleetConfig
from fleet.db.store import FleetStore
from fleet.ingest import Ingest, Message
from fleet.service import FleetService
from shared.errors import ConfigError
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


def _leader(store: FleetStore, **registry: Any) -> FleetService:
    """A worker holding the leader lease over this store (its maintenance tick run by hand), no broker needed."""
    cfg = FleetConfig.model_validate({"fleet": store.fleet, "database": {"url": str(store.engine.url)},
                                      "registry": {"expire_after_s": None, **registry}})
    service = FleetService(cfg)
    service.store = store
    service._leader.set()
    return service


def test_the_maintenance_tick_prunes_tombstones_past_their_retention(store: FleetStore, clock: Clock) -> None:
    Ingest(store).process(_retained("old", clock()) + _retained("recent", clock()))
    store.remove_device("old")
    clock.advance(29 * 86400)
    store.remove_device("recent")
    leader = _leader(store)
    assert leader.cfg.registry.tombstone_retention_s == 30 * 86400  # the default: a month
    leader._maintain_once()
    assert store.tombstones.among(["old", "recent"]) == {"old", "recent"}
    clock.advance(86400 + 1)
    leader._maintain_once()
    assert store.tombstones.among(["old", "recent"]) == {"recent"}
    assert store.tombstones.removed_at("recent") == clock() - (86400 + 1) * 1000


def test_tombstones_are_kept_for_good_when_their_retention_is_none(store: FleetStore, clock: Clock) -> None:
    Ingest(store).process(_retained("old", clock()))
    store.remove_device("old")
    clock.advance(10 * 365 * 86400)
    _leader(store, tombstone_retention_s=None)._maintain_once()
    assert store.tombstones.among(["old"]) == {"old"}


def test_an_expired_device_tombstone_is_pruned_on_the_same_tick_once_old_enough(store: FleetStore,
                                                                                 clock: Clock) -> None:
    Ingest(store).process(_retained("quiet", clock()))
    clock.advance(3600)
    leader = _leader(store, expire_after_s=600, tombstone_retention_s=1800)
    leader._maintain_once()  # expires the device: a tombstone now
    assert store.devices.get("quiet") is None and store.tombstones.among(["quiet"]) == {"quiet"}
    clock.advance(1801)
    leader._maintain_once()
    assert store.tombstones.among(["quiet"]) == set()


def test_a_tombstone_retention_below_a_minute_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="tombstone_retention_s") as refused:
        load(None, ["fleet=lab", "registry.tombstone_retention_s=1"])
    assert "\n" not in str(refused.value)
