"""Bounded resources against one device: the ingest queue in bytes with a share per device, retention by the
fleet's receive time, a cap on devices nobody assigned, expiry of silent devices, and paged registry reads."""

from __future__ import annotations

import json
from dataclasses import replace

from fleet.db.store import FleetStore
from fleet.ingest import Ingest
from fleet.metrics_export import FleetMetricsExporter, StoreSnapshot
from fleet.registry import TelemetrySample
from tests.fleet.conftest import Clock
from tests.fleet.poison import state_doc, telemetry_doc

BASE = "edgeferry/lab"
MiB = 1024 * 1024


def _flood_payload(device: str, seq: int) -> bytes:
    """216 kB of telemetry, just under the 256 KiB limit, as in issue 19."""
    doc = telemetry_doc(device, seq)
    doc.update({f"x{i}": i for i in range(13_400)})
    payload = json.dumps(doc).encode()
    assert 200_000 < len(payload) < 256 * 1024
    return payload


def test_a_flood_sheds_only_the_flooding_devices_messages_and_counts_them(store: FleetStore) -> None:
    ingest = Ingest(store, max_queue_bytes=16 * MiB, device_queue_bytes=2 * MiB)
    flood = _flood_payload("evil", 1)
    for seq in range(200):  # 43 MB offered while the writer is busy
        ingest.offer(f"{BASE}/evil/telemetry", flood, False)
        for device in ("cam-1", "cam-2"):
            ingest.offer(f"{BASE}/{device}/telemetry", json.dumps(telemetry_doc(device, seq)).encode(), False)
    assert ingest.queue.bytes <= 16 * MiB
    while ingest.drain(0):
        pass
    for device in ("cam-1", "cam-2"):
        assert len(store.telemetry_window(device, 0, 2**62)) == 200
        assert store.device(device).shed == 0
    evil = store.device("evil")
    kept = len(store.telemetry_window("evil", 0, 2**62))
    assert 0 < kept < 20 and evil.shed == 200 - kept
    assert ingest.stats.dropped == evil.shed
    scrape = FleetMetricsExporter(StoreSnapshot(store)).render().decode()
    assert f'edgeferry_device_ingest_shed_total{{device="evil",fleet="lab"}} {evil.shed}.0' in scrape
    assert 'edgeferry_device_ingest_shed_total{device="cam-1",fleet="lab"} 0.0' in scrape


def test_the_writer_takes_devices_in_turn(store: FleetStore) -> None:
    """A device with a long backlog does not delay another's next message behind its whole backlog."""
    ingest = Ingest(store, max_batch=4)
    for seq in range(40):
        ingest.offer(f"{BASE}/evil/telemetry", json.dumps(telemetry_doc("evil", seq)).encode(), False)
    ingest.offer(f"{BASE}/cam-1/telemetry", json.dumps(telemetry_doc("cam-1", 0)).encode(), False)
    ingest.drain(0)
    assert len(store.telemetry_window("cam-1", 0, 2**62)) == 1


def test_retention_goes_by_receive_time_not_the_device_clock(store: FleetStore, clock: Clock) -> None:
    ten_years_ahead = clock() + 10 * 365 * 86_400_000
    received = clock()
    store.telemetry.add([("cam-1", TelemetrySample(ten_years_ahead, {"fps": 1.0}), received),
                         ("cam-1", TelemetrySample(received, {"fps": 2.0}), received)])
    store.telemetry.rebuild_history(received - 60_000, received + 60_000, 10_000)
    assert len(store.telemetry.history("cam-1", 0, 2**62)) == 1  # bucketed where it arrived
    clock.advance(7200)
    removed = store.telemetry.prune(clock() - 3_600_000, clock() - 3_600_000)
    assert removed == (2, 1) and store.telemetry.counts() == (0, 0)


def test_devices_nobody_assigned_are_capped_and_assigned_ones_always_register(store: FleetStore,
                                                                              clock: Clock) -> None:
    ingest = Ingest(store, max_unassigned=3)
    store.devices.update("kept", lambda r: r)
    store.devices.assign("kept", "north", clock())
    batch = [(f"{BASE}/fake-{i}/status", b"online", False, clock()) for i in range(10)]
    batch.append((f"{BASE}/kept/status", b"online", False, clock()))
    ingest.process(batch)
    ids = [r.device_id for r in store.list_devices()]
    assert ids == ["fake-0", "fake-1", "fake-2", "kept"]
    assert ingest.stats.capped == 7
    ingest.process([(f"{BASE}/fake-0/state", json.dumps(state_doc("fake-0")).encode(), False, clock())])
    assert store.device("fake-0").groups == ("north",)  # a known device still updates


def test_silent_devices_expire_and_reads_page(store: FleetStore, clock: Clock) -> None:
    for i in range(25):
        store.devices.update(f"cam-{i:02d}", lambda r: replace(r, last_seen_ms=clock(), first_seen_ms=clock()))
    clock.advance(3600)
    store.devices.update("cam-07", lambda r: replace(r, last_seen_ms=clock()))
    pages, after = [], None
    while page := store.list_devices(limit=10, after=after):
        pages.append([r.device_id for r in page])
        after = page[-1].device_id
    assert [len(p) for p in pages] == [10, 10, 5] and pages[0][0] == "cam-00" and store.count_devices() == 25
    gone = store.expire_devices(1_800_000)
    assert len(gone) == 24 and [r.device_id for r in store.list_devices()] == ["cam-07"]


def test_the_queue_is_bounded_in_messages_too_and_what_it_sheds_is_counted_on_each_device(store: FleetStore) -> None:
    """Many devices' small messages (under every byte bound) stop at the message bound: memory per message is more
    than its bytes, so a burst of 10,000 devices cannot grow the queue past what the operator set."""
    ingest = Ingest(store, max_queue_messages=100)
    for i in range(150):
        ingest.offer(f"{BASE}/cam-{i}/telemetry", json.dumps(telemetry_doc(f"cam-{i}", 0)).encode(), False)
    assert ingest.pending() == 100 and ingest.stats.dropped == 50
    while ingest.drain(0):
        pass
    shed = {r.device_id: r.shed for r in store.list_devices()}
    assert sum(shed.values()) == 50 and len(shed) == 150
    assert sum(len(store.telemetry_window(f"cam-{i}", 0, 2**62)) for i in range(150)) == 100
