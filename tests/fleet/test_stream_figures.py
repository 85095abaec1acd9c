"""The fleet keeps each device's latest per-stream figures from its telemetry, validated and bounded."""

from __future__ import annotations

import json
from typing import Any

from fleet.db.store import FleetStore
from fleet.device_removal import remove_device
from fleet.ingest import Ingest
from fleet.metrics_export import FleetMetricsExporter, StoreSnapshot
from fleet.sim.streams import StreamsSim
from fleet.stream_figures import MAX_STREAMS_PER_DEVICE, StreamFigures
from tests.fleet.poison import telemetry_doc

BASE = "edgeferry/lab"


def _send(ingest: Ingest, device: str, doc: dict[str, Any]) -> None:
    ingest.process([(f"{BASE}/{device}/telemetry", json.dumps(doc).encode(), False, 1_700_000_000_000)])


def _streams(store: FleetStore, device: str) -> dict[str, dict[str, float]]:
    got = StreamFigures(store.engine, store.fleet).get(device)
    return {} if got is None else got.streams


def test_a_multi_stream_report_is_kept_per_stream_and_the_next_replaces_it(store: FleetStore) -> None:
    ingest = Ingest(store)
    sim = StreamsSim(3, "s", stalled="cam2")
    doc = telemetry_doc("cam-box", 1, streams=sim.tick(1.0))
    _send(ingest, "cam-box", doc)
    kept = _streams(store, "cam-box")
    assert sorted(kept) == ["cam0", "cam1", "cam2"]
    assert kept["cam0"]["connected"] == 1.0 and kept["cam2"]["connected"] == 0.0
    assert kept["cam1"]["processed_fps"] == doc["streams"]["cam1"]["processed_fps"]
    # A stream removed on the agent disappears with its next report; an older report changes nothing.
    newer = telemetry_doc("cam-box", 2, streams={"cam0": {"frames": 99}})
    newer["ts"] = doc["ts"] + 1000
    _send(ingest, "cam-box", newer)
    older = telemetry_doc("cam-box", 0, streams={"old": {"frames": 1}})
    older["ts"] = doc["ts"] - 1000
    _send(ingest, "cam-box", older)
    assert _streams(store, "cam-box") == {"cam0": {"frames": 99.0}}


def test_a_report_with_a_figure_out_of_range_is_refused_and_keeps_nothing(store: FleetStore) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"cam0": {"connected": 7}}))
    assert _streams(store, "cam-box") == {}
    assert store.device("cam-box").refused == 1
    assert "connected" in (store.device("cam-box").last_refused or "")


def test_streams_beyond_the_per_device_bound_are_counted_not_kept(store: FleetStore) -> None:
    ingest = Ingest(store)
    many = {f"s{i:02d}": {"frames": i} for i in range(MAX_STREAMS_PER_DEVICE + 5)}
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams=many))
    got = StreamFigures(store.engine, store.fleet).get("cam-box")
    assert got is not None and len(got.streams) == MAX_STREAMS_PER_DEVICE and got.dropped == 5
    assert "s36" not in got.streams and "s00" in got.streams


def test_the_fleet_metrics_carry_a_stream_label(store: FleetStore) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"door": {"processed_fps": 12.5, "frames": 40}}))
    scrape = FleetMetricsExporter(StoreSnapshot(store)).render().decode()
    assert 'edgeferry_device_stream_processed_fps{device="cam-box",fleet="lab",stream="door"} 12.5' in scrape
    assert 'edgeferry_device_stream_frames_total{device="cam-box",fleet="lab",stream="door"} 40.0' in scrape


class _Publisher:
    """Accepts every clear (the broker side is tested in tests/fleet/test_tombstones.py and the CLI tests)."""

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        pass


def test_a_removed_device_leaves_no_streams_behind(store: FleetStore) -> None:
    ingest = Ingest(store)
    _send(ingest, "cam-box", telemetry_doc("cam-box", 1, streams={"door": {"frames": 3}}))
    assert _streams(store, "cam-box")
    remove_device(store, _Publisher(), "cam-box")  # type: ignore[arg-type]
    assert _streams(store, "cam-box") == {}


def test_a_replayed_report_from_the_outbox_changes_nothing(store: FleetStore) -> None:
    ingest = Ingest(store)
    live = telemetry_doc("cam-box", 2, streams={"door": {"frames": 5}})
    _send(ingest, "cam-box", live)
    replayed = telemetry_doc("cam-box", 1, streams={"old": {"frames": 1}}, replayed=True)
    replayed["ts"] = live["ts"] + 1000  # even a later device clock: an outbox replay is history, not now
    _send(ingest, "cam-box", replayed)
    assert _streams(store, "cam-box") == {"door": {"frames": 5.0}}
