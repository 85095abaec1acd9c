"""The registry read again only where it changed (fleet.db.device_changes): a write to a device, a group assignment
and a removal each make that device, and only that one, read again; on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

from fleet.db.device_changes import read_changes
from fleet.db.store import FleetStore


def _seed(store: FleetStore, n: int) -> None:
    now = store.clock()
    for i in range(n):
        store.devices.update(f"cam-{i}", lambda r: replace(r, reported_status="online", last_seen_ms=now))


def test_only_changed_devices_are_read_again(store: FleetStore) -> None:
    _seed(store, 5)
    first = read_changes(store.engine, store.fleet, {})
    assert sorted(r.device_id for r in first.changed) == [f"cam-{i}" for i in range(5)] and first.gone == set()
    held = dict(first.versions)
    assert read_changes(store.engine, store.fleet, held).changed == []

    store.devices.update("cam-1", lambda r: replace(r, model_version=7))
    store.devices.assign("cam-3", "roof", store.clock())
    store.remove_device("cam-4")
    again = read_changes(store.engine, store.fleet, held)
    by_id = {r.device_id: r for r in again.changed}
    assert sorted(by_id) == ["cam-1", "cam-3"] and again.gone == {"cam-4"}
    assert by_id["cam-1"].model_version == 7
    assert by_id["cam-3"].assigned_groups == ("roof",) and "roof" in by_id["cam-3"].groups
    assert read_changes(store.engine, store.fleet, again.versions).changed == []
